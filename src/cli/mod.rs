//! The `kdseg` command line: argument parsing and the thin glue between the library and a terminal.

pub mod bag;
pub mod bench;
pub mod interrupt;
pub mod mos;
pub mod sim;
pub mod train;
