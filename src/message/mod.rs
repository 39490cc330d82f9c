//! What a message is, as plain values: its envelope, its raw header fields,
//! the stamp we put on it and the verdict reached about it. No I/O.

pub mod envelope;
pub mod headers;
pub mod stamp;
pub mod verdict;
