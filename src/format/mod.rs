//! On-disk format: file header, block layout and offset arithmetic, directory-id files,
//! and the JSON records of the volume config and key store. Pure encode/decode, no I/O.
//! Every change here is a format change: update `docs/format.md` and the sample volume test.

mod blocks;
mod dirid;
mod header;
mod holes;
mod records;
mod sealed;

pub use blocks::{BlockLayout, block_aad};
pub use dirid::{
    DIRID_FILE_NAME, DIRID_LEN, DIRID_V1_LEN, DIRID_VERSION, DIRID_XATTR_NAME, DirIdFile,
};
pub use header::{FileHeader, HEADER_LEN, MAGIC};
pub use holes::{
    HOLES_PREFIX_LEN, HoleList, MAX_HOLE_RANGES, check_holes_prefix, holes_aad, holes_prefix,
};
pub use records::{KeyStore, ScopeRecord, VolumeConfig, WrappedDataKey, WrapperId};
pub use sealed::{SEALED_VERSION, SealedCopy, is_sealed};

/// The version byte written in every header, directory-id file and record.
pub const FORMAT_VERSION: u8 = 1;

/// The `format` of `volume.json` and the key store since their copies are kept twice and
/// self-checking (format 2); version-1 records are still read, and upgraded on the first
/// writable mount.
pub const META_FORMAT_VERSION: u8 = 2;

/// Name of the reserved metadata directory in the backing root.
pub const META_DIR: &str = ".cmkfs";

/// Identifies one data key: its key scope and epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DataKeyRef {
    pub scope: u32,
    pub epoch: u32,
}

impl std::fmt::Display for DataKeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scope {} epoch {}", self.scope, self.epoch)
    }
}

/// Bytes that do not decode as the format says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("bad magic")]
    Magic,
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("truncated ({0} bytes)")]
    Truncated(usize),
    #[error("invalid field: {0}")]
    Field(&'static str),
}
