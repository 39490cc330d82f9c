//! Container formats read from hostile bytes: ZIP/TAR/CAB/GZIP, RAR and 7z,
//! TNEF, OLE2 compound files.

pub mod archive;
pub mod cfb;
pub mod rar;
pub mod tnef;
