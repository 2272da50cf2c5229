//! The open-file table: one `OpenFile` per backing inode, shared by every handle and hard
//! link, so that all writers of a file serialize on the same lock and see the same size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::OpenFile;

#[derive(Default)]
pub struct OpenFileTable {
    files: Mutex<HashMap<u64, Weak<OpenFile>>>,
}

impl OpenFileTable {
    /// The live `OpenFile` of `backing_ino`, or the one `make` builds.
    pub fn get_or_insert<E>(
        &self,
        backing_ino: u64,
        make: impl FnOnce() -> Result<OpenFile, E>,
    ) -> Result<Arc<OpenFile>, E> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(&backing_ino).and_then(Weak::upgrade) {
            return Ok(f);
        }
        let f = Arc::new(make()?);
        if files.len() > 64 && files.len().is_power_of_two() {
            files.retain(|_, w| w.strong_count() > 0);
        }
        files.insert(backing_ino, Arc::downgrade(&f));
        Ok(f)
    }

    pub fn get(&self, backing_ino: u64) -> Option<Arc<OpenFile>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(&backing_ino).and_then(Weak::upgrade)
    }

    pub fn live(&self) -> Vec<Arc<OpenFile>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.values().filter_map(Weak::upgrade).collect()
    }

    /// The file registered under `old` is now backing inode `new` (re-encryption): re-key it
    /// before `old` can be reused by the backing filesystem.
    pub fn rekey(&self, old: u64, new: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = files.remove(&old) {
            files.insert(new, w);
        }
    }
}
