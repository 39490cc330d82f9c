//! Container formats read from hostile bytes: ZIP, TAR, CAB and GZIP
//! (`archive`), RAR and 7z (`rar`), TNEF (winmail.dat), OLE2 compound files
//! (`cfb`). Our own code where no maintained crate reads just the directory
//! of a container without unpacking it.
//!
//! Owns: bounded, panic-free parsing (every offset checked, every count and
//! size capped). Must never: decompress without a bound, follow a cycle in a
//! hostile structure, or execute or write anything it reads.

pub(crate) mod archive;
pub(crate) mod cfb;
pub(crate) mod rar;
pub(crate) mod tnef;
