//! cmkfs: a transparent encrypted filesystem. The binary's CLI sits on top of these layers:
//! `fs` (FUSE frontend) -> `volume` (core) -> `names`, `format`, `keys` -> `crypto`.

pub mod atomic_file;
pub mod audit;
pub mod cli;
pub mod config;
pub mod control;
pub mod crypto;
pub mod daemon;
pub mod format;
pub mod fs;
pub mod fsck;
pub mod keys;
pub mod meta_copies;
pub mod metrics;
pub mod names;
pub mod runtime;
pub mod volume;
