//! The inode table: FUSE inode numbers <-> where the entry lives (parent inode and plaintext
//! name; an open `Dir` for directories). A FUSE inode number is the backing inode number
//! when free, so numbers stay stable while mounted; a reused backing number gets a fresh one.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;

use crate::volume::{Dir, FileKind, LastRef};

pub const ROOT_INO: u64 = 1;
/// Inode numbers handed out when the backing number is taken.
const HIGH_INO_BASE: u64 = 1 << 62;

pub struct Node {
    pub kind: FileKind,
    /// Where the entry was last seen; hard links keep their other names in `other_links`.
    pub parent: u64,
    pub name: OsString,
    pub other_links: Vec<(u64, OsString)>,
    pub dir: Option<Arc<Dir>>,
    pub backing_ino: u64,
    nlookup: u64,
    /// False once its last name was removed.
    pub linked: bool,
    /// Once its last name went (unlink, rename over it) while the kernel still knew it: a
    /// reference to the removed file, so that an open or getattr of this inode still reaches
    /// that file (never what took its name, nor a new file that reused its inode number).
    pub pin: Option<Arc<LastRef>>,
}

pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_backing: HashMap<u64, u64>,
    next_high: u64,
}

impl InodeTable {
    pub fn new(root: Arc<Dir>, root_backing_ino: u64) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                kind: FileKind::Dir,
                parent: ROOT_INO,
                name: OsString::new(),
                other_links: Vec::new(),
                dir: Some(root),
                backing_ino: root_backing_ino,
                nlookup: 1,
                linked: true,
                pin: None,
            },
        );
        let mut by_backing = HashMap::new();
        by_backing.insert(root_backing_ino, ROOT_INO);
        InodeTable {
            nodes,
            by_backing,
            next_high: HIGH_INO_BASE,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The node of backing inode `old` now stands for backing inode `new` (re-encryption).
    pub fn rebind(&mut self, old: u64, new: u64) {
        if let Some(ino) = self.by_backing.remove(&old) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.backing_ino = new;
            }
            self.by_backing.insert(new, ino);
        }
    }

    pub fn knows_backing(&self, backing_ino: u64) -> bool {
        self.by_backing.contains_key(&backing_ino)
    }

    /// The FUSE inode that the kernel would see for a backing inode (for readdir).
    pub fn ino_for_backing(&self, backing_ino: u64) -> u64 {
        match self.by_backing.get(&backing_ino) {
            Some(i) => *i,
            None if backing_ino != ROOT_INO && !self.nodes.contains_key(&backing_ino) => {
                backing_ino
            }
            None => HIGH_INO_BASE - 1,
        }
    }

    /// Records a lookup of `name` in `parent` that found `backing_ino`; returns the FUSE inode.
    /// `open_dir` is called only when a new directory node needs its `Dir`.
    pub fn intern(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: FileKind,
        backing_ino: u64,
        open_dir: impl FnOnce() -> Option<Arc<Dir>>,
    ) -> u64 {
        if let Some(&ino) = self.by_backing.get(&backing_ino) {
            if let Some(n) = self.nodes.get_mut(&ino)
                && n.kind == kind
            {
                n.nlookup += 1;
                if ino != ROOT_INO && (n.parent != parent || n.name != name) {
                    let old = (
                        n.parent,
                        std::mem::replace(&mut n.name, name.to_os_string()),
                    );
                    n.parent = parent;
                    n.other_links
                        .retain(|(p, nm)| !(*p == parent && nm == name));
                    if n.kind != FileKind::Dir && n.other_links.len() < 64 {
                        n.other_links.push(old);
                    }
                }
                return ino;
            }
            // Same backing number, other type: the old object is gone.
            self.by_backing.remove(&backing_ino);
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.linked = false;
            }
        }
        let ino = if backing_ino > ROOT_INO
            && backing_ino < HIGH_INO_BASE
            && !self.nodes.contains_key(&backing_ino)
        {
            backing_ino
        } else {
            self.next_high += 1;
            self.next_high
        };
        let dir = if kind == FileKind::Dir {
            open_dir()
        } else {
            None
        };
        self.nodes.insert(
            ino,
            Node {
                kind,
                parent,
                name: name.to_os_string(),
                other_links: Vec::new(),
                dir,
                backing_ino,
                nlookup: 1,
                linked: true,
                pin: None,
            },
        );
        self.by_backing.insert(backing_ino, ino);
        ino
    }

    /// The kernel forgot `n` lookups of `ino`; returns the removed file it kept, when the
    /// node goes (for the caller to free).
    pub fn forget(&mut self, ino: u64, n: u64) -> Option<Arc<LastRef>> {
        if ino == ROOT_INO {
            return None;
        }
        let gone = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.nlookup = node.nlookup.saturating_sub(n);
                node.nlookup == 0
            }
            None => false,
        };
        if !gone {
            return None;
        }
        let node = self.nodes.remove(&ino)?;
        if self.by_backing.get(&node.backing_ino) == Some(&ino) {
            self.by_backing.remove(&node.backing_ino);
        }
        node.pin
    }

    /// Registers an unnamed file (`O_TMPFILE`) created in `parent`, kept by `last`; returns its
    /// inode. It is found by no backing number until [`Self::named`] gives it a name.
    pub fn add_unnamed(&mut self, parent: u64, last: LastRef) -> u64 {
        let backing_ino = last.backing_ino;
        let ino = if backing_ino > ROOT_INO
            && backing_ino < HIGH_INO_BASE
            && !self.nodes.contains_key(&backing_ino)
        {
            backing_ino
        } else {
            self.next_high += 1;
            self.next_high
        };
        self.nodes.insert(
            ino,
            Node {
                kind: FileKind::File,
                parent,
                name: OsString::new(),
                other_links: Vec::new(),
                dir: None,
                backing_ino,
                nlookup: 1,
                linked: false,
                pin: Some(Arc::new(last)),
            },
        );
        ino
    }

    /// The unnamed (or removed) file of `ino` got the name `name` in `parent` (`linkat`): it is
    /// an ordinary entry again. Returns the reference that kept it, no longer needed (drop it:
    /// the file is named, nothing is to be freed).
    pub fn named(&mut self, ino: u64, parent: u64, name: &OsStr) -> Option<Arc<LastRef>> {
        let n = self.nodes.get_mut(&ino)?;
        n.linked = true;
        n.parent = parent;
        n.name = name.to_os_string();
        n.nlookup += 1;
        let backing_ino = n.backing_ino;
        let pin = n.pin.take();
        if let Some(old) = self.by_backing.insert(backing_ino, ino)
            && old != ino
            && let Some(o) = self.nodes.get_mut(&old)
        {
            // A stale node for a reused backing number: the old object is gone.
            o.linked = false;
        }
        pin
    }

    /// Keeps the removed file `last` for the inode of its backing number, if the kernel knows
    /// one; otherwise gives it back (for the caller to free). Call before [`Self::removed`].
    pub fn pin(&mut self, last: LastRef) -> Option<LastRef> {
        let Some(n) = self
            .by_backing
            .get(&last.backing_ino)
            .and_then(|i| self.nodes.get_mut(i))
        else {
            return Some(last);
        };
        if n.kind == FileKind::Dir || n.pin.is_some() {
            return Some(last);
        }
        n.pin = Some(Arc::new(last));
        None
    }

    /// Takes the removed files kept for inodes the kernel may still open but that no handle
    /// has open (`is_open`): freeing them is worth more than answering a late open of a
    /// deleted file (statfs, a full disk). Such inodes then give ENOENT.
    pub fn release_pins(&mut self, is_open: impl Fn(u64) -> bool) -> Vec<Arc<LastRef>> {
        self.nodes
            .values_mut()
            .filter(|n| !n.linked && !is_open(n.backing_ino))
            .filter_map(|n| n.pin.take())
            .collect()
    }

    /// The entry `name` in `parent` (a name of `backing_ino`) was removed. If it was the last
    /// link, the node stays (open handles) but is no longer found by its backing number;
    /// otherwise another known name takes its place.
    pub fn removed(&mut self, backing_ino: u64, parent: u64, name: &OsStr, last_link: bool) {
        let Some(&ino) = self.by_backing.get(&backing_ino) else {
            return;
        };
        if last_link {
            self.by_backing.remove(&backing_ino);
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.other_links
                .retain(|(p, nm)| !(*p == parent && nm == name));
            if last_link {
                n.linked = false;
            } else if n.parent == parent
                && n.name == name
                && let Some((p, nm)) = n.other_links.pop()
            {
                n.parent = p;
                n.name = nm;
            }
        }
    }

    /// The entry with `backing_ino` moved from `from` to `name` in `parent`.
    pub fn moved(&mut self, backing_ino: u64, from: (u64, &OsStr), parent: u64, name: &OsStr) {
        if let Some(&ino) = self.by_backing.get(&backing_ino)
            && let Some(n) = self.nodes.get_mut(&ino)
        {
            n.other_links.retain(|(p, nm)| {
                !((*p == from.0 && nm == from.1) || (*p == parent && nm == name))
            });
            if !(n.parent == from.0 && n.name == from.1) && n.kind != FileKind::Dir {
                n.other_links.push((n.parent, n.name.clone()));
            }
            n.parent = parent;
            n.name = name.to_os_string();
        }
    }

    /// The inodes in the key scopes `scopes`: a directory by its own id, anything else by
    /// its parent directory's.
    pub fn inos_in_scopes(&self, scopes: &[u32]) -> Vec<u64> {
        let scope_of_dir = |ino: u64| {
            self.nodes
                .get(&ino)
                .and_then(|n| n.dir.as_ref())
                .map(|d| d.scope())
        };
        self.nodes
            .iter()
            .filter(|(_, n)| {
                let s = match &n.dir {
                    Some(d) => Some(d.scope()),
                    None => scope_of_dir(n.parent),
                };
                // Unknown (parent forgotten): invalidated too, to be safe.
                s.is_none_or(|s| scopes.contains(&s))
            })
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// Every directory the table holds open, by backing inode.
    pub fn dirs(&self) -> Vec<(u64, Arc<Dir>)> {
        self.nodes
            .values()
            .filter_map(|n| n.dir.as_ref().map(|d| (n.backing_ino, d.clone())))
            .collect()
    }

    /// Gives the directory inode of backing inode `backing_ino` a newly loaded `dir`.
    pub fn replace_dir(&mut self, backing_ino: u64, dir: Arc<Dir>) {
        if let Some(ino) = self.by_backing.get(&backing_ino).copied()
            && let Some(n) = self.nodes.get_mut(&ino)
            && n.dir.is_some()
        {
            n.dir = Some(dir);
        }
    }

    /// The plaintext path of `ino` relative to the mount, for log lines.
    pub fn path(&self, mut ino: u64) -> PathBuf {
        let mut parts = Vec::new();
        let mut guard = 0;
        while ino != ROOT_INO && guard < 4096 {
            let Some(n) = self.nodes.get(&ino) else { break };
            parts.push(n.name.clone());
            ino = n.parent;
            guard += 1;
        }
        let mut p = PathBuf::from("/");
        for part in parts.iter().rev() {
            p.push(part);
        }
        p
    }
}
