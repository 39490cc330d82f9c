//! Container formats read from hostile bytes: ZIP/TAR/CAB/GZIP, RAR and 7z,
//! TNEF, OLE2 compound files.

pub(crate) mod archive;
pub(crate) mod cfb;
pub(crate) mod rar;
pub(crate) mod tnef;
