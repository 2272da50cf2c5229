//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`): the kernel's xattr
//! encoding, the mode/ACL rules of `fs/posix_acl.c` (equivalent mode, chmod, create-time
//! masking), and their storage as ordinary encrypted xattrs of the object (see `xattr`).
//! The kernel enforces them (FUSE_POSIX_ACL with `default_permissions`); with FUSE_POSIX_ACL
//! it leaves to the filesystem what this module does: keeping the mode and the ACL consistent
//! and inheriting a directory's default ACL on create. Never checks permissions itself.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use nix::sys::stat::{Mode, fchmod, fstat};

use super::{Dir, Result, Volume, XattrTarget, errno};

pub const ACCESS_NAME: &str = "system.posix_acl_access";
pub const DEFAULT_NAME: &str = "system.posix_acl_default";

/// Version of the kernel's ACL xattr encoding (`POSIX_ACL_XATTR_VERSION`).
const XATTR_VERSION: u32 = 2;
const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;
/// The kernel refuses ACL xattrs larger than a page.
const MAX_ENTRIES: usize = (4096 - 4) / 8;

/// Which ACL of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclKind {
    Access,
    Default,
}

impl AclKind {
    pub fn from_xattr_name(name: &[u8]) -> Option<AclKind> {
        match name {
            n if n == ACCESS_NAME.as_bytes() => Some(AclKind::Access),
            n if n == DEFAULT_NAME.as_bytes() => Some(AclKind::Default),
            _ => None,
        }
    }

    pub fn xattr_name(self) -> &'static OsStr {
        OsStr::new(match self {
            AclKind::Access => ACCESS_NAME,
            AclKind::Default => DEFAULT_NAME,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A decoded, validated ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Parses and validates the kernel's encoding: `version (u32 LE, 2)` then entries of
    /// `tag (u16) || perm (u16) || id (u32)`. `EINVAL` for anything `posix_acl_valid` refuses.
    pub fn decode(value: &[u8]) -> Result<Acl> {
        let bad = || errno(libc::EINVAL);
        if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
            return Err(bad());
        }
        if u32::from_le_bytes([value[0], value[1], value[2], value[3]]) != XATTR_VERSION {
            return Err(bad());
        }
        let entries: Vec<Entry> = value[4..]
            .chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        if entries.len() > MAX_ENTRIES {
            return Err(errno(libc::E2BIG));
        }
        let count = |t: u16| entries.iter().filter(|e| e.tag == t).count();
        let named = count(TAG_USER) + count(TAG_GROUP);
        if count(TAG_USER_OBJ) != 1
            || count(TAG_GROUP_OBJ) != 1
            || count(TAG_OTHER) != 1
            || count(TAG_MASK) > 1
            || (named > 0 && count(TAG_MASK) == 0)
        {
            return Err(bad());
        }
        for e in &entries {
            let known = matches!(
                e.tag,
                TAG_USER_OBJ | TAG_USER | TAG_GROUP_OBJ | TAG_GROUP | TAG_MASK | TAG_OTHER
            );
            if !known || e.perm & !7 != 0 {
                return Err(bad());
            }
        }
        for t in [TAG_USER, TAG_GROUP] {
            let mut ids: Vec<u32> = entries
                .iter()
                .filter(|e| e.tag == t)
                .map(|e| e.id)
                .collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != n {
                return Err(bad());
            }
        }
        let mut acl = Acl { entries };
        acl.normalize();
        Ok(acl)
    }

    /// Kernel order: by tag, then by id; ids of the unnamed entries undefined.
    fn normalize(&mut self) {
        for e in &mut self.entries {
            if !matches!(e.tag, TAG_USER | TAG_GROUP) {
                e.id = UNDEFINED_ID;
            }
        }
        self.entries.sort_by_key(|e| (e.tag, e.id));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&XATTR_VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: u16) -> u32 {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map(|e| e.perm as u32)
            .unwrap_or(0)
    }

    fn has(&self, tag: u16) -> bool {
        self.entries.iter().any(|e| e.tag == tag)
    }

    /// The permission bits (0o777) the ACL stands for, and whether the mode alone says
    /// everything (`posix_acl_equiv_mode`: no named entries, no mask).
    pub fn equiv_mode(&self) -> (u32, bool) {
        let group = if self.has(TAG_MASK) {
            self.perm_of(TAG_MASK)
        } else {
            self.perm_of(TAG_GROUP_OBJ)
        };
        let mode = (self.perm_of(TAG_USER_OBJ) << 6) | (group << 3) | self.perm_of(TAG_OTHER);
        let equivalent = !self
            .entries
            .iter()
            .any(|e| matches!(e.tag, TAG_USER | TAG_GROUP | TAG_MASK));
        (mode, equivalent)
    }

    /// `posix_acl_chmod`: owner, group class (the mask, or the owning group without one) and
    /// other take the new mode's bits; named entries keep theirs.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.has(TAG_MASK);
        for e in &mut self.entries {
            let bits = match e.tag {
                TAG_USER_OBJ => (mode >> 6) & 7,
                TAG_MASK => (mode >> 3) & 7,
                TAG_GROUP_OBJ if !has_mask => (mode >> 3) & 7,
                TAG_OTHER => mode & 7,
                _ => continue,
            };
            e.perm = bits as u16;
        }
    }

    /// `posix_acl_create_masq`: a default ACL becoming a new object's access ACL, masked by
    /// the mode the creator asked for; the mode is masked by the ACL in turn. Returns whether
    /// the result needs an access ACL (false: the mode says it all).
    pub fn create_masq(&mut self, mode: &mut u32) -> bool {
        let has_mask = self.has(TAG_MASK);
        let mut not_equiv = false;
        for e in &mut self.entries {
            match e.tag {
                TAG_USER_OBJ => {
                    e.perm &= ((*mode >> 6) & 7) as u16;
                    *mode &= ((e.perm as u32) << 6) | !0o700;
                }
                TAG_USER | TAG_GROUP => not_equiv = true,
                TAG_OTHER => {
                    e.perm &= (*mode & 7) as u16;
                    *mode &= (e.perm as u32) | !0o007;
                }
                TAG_MASK => {
                    not_equiv = true;
                    e.perm &= ((*mode >> 3) & 7) as u16;
                    *mode &= ((e.perm as u32) << 3) | !0o070;
                }
                TAG_GROUP_OBJ if !has_mask => {
                    e.perm &= ((*mode >> 3) & 7) as u16;
                    *mode &= ((e.perm as u32) << 3) | !0o070;
                }
                _ => {}
            }
        }
        not_equiv
    }
}

/// What a new object gets from its parent directory: the mode to create it with and the ACLs
/// to store once it exists.
#[derive(Clone, Debug)]
pub struct Inherited {
    pub mode: u32,
    pub access: Option<Acl>,
    /// Only for directories: the parent's default ACL, unchanged.
    pub default: Option<Acl>,
}

impl Inherited {
    pub fn is_empty(&self) -> bool {
        self.access.is_none() && self.default.is_none()
    }
}

fn is_no_data(e: &super::VolumeError) -> bool {
    match e {
        super::VolumeError::Io(io) => io.raw_os_error() == Some(libc::ENODATA),
        super::VolumeError::Errno(n) => *n == libc::ENODATA,
        _ => false,
    }
}

impl Volume {
    fn object_mode(t: &XattrTarget<'_>) -> Result<u32> {
        Ok(match t {
            XattrTarget::Dir(d) => fstat(d.fd())?.st_mode,
            XattrTarget::File(f) => fstat(f.raw_file().as_fd())?.st_mode,
        })
    }

    fn object_chmod(t: &XattrTarget<'_>, mode: u32) -> Result<()> {
        let m = Mode::from_bits_truncate(mode & 0o7777);
        match t {
            XattrTarget::Dir(d) => fchmod(d.fd(), m)?,
            XattrTarget::File(f) => fchmod(f.raw_file().as_fd(), m)?,
        }
        Ok(())
    }

    /// The stored ACL of the object, if any.
    pub fn get_acl(&self, t: XattrTarget<'_>, kind: AclKind) -> Result<Option<Acl>> {
        match self.get_xattr(t, kind.xattr_name()) {
            Ok(v) => Acl::decode(&v).map(Some),
            Err(e) if is_no_data(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `setxattr` of an ACL by a user (`setfacl`): an access ACL sets the permission bits;
    /// one the mode alone expresses is not stored (`posix_acl_update_mode`). A default ACL is
    /// for directories only.
    pub(super) fn set_acl(
        &self,
        t: XattrTarget<'_>,
        kind: AclKind,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let acl = Acl::decode(value)?;
        match kind {
            AclKind::Default => {
                if !matches!(t, XattrTarget::Dir(_)) {
                    return Err(errno(libc::EACCES));
                }
                self.store_xattr(t, kind.xattr_name(), &acl.encode(), flags)
            }
            AclKind::Access => {
                let (bits, equivalent) = acl.equiv_mode();
                let old = Self::object_mode(&t)?;
                if equivalent {
                    match self.remove_xattr(t, kind.xattr_name()) {
                        Err(e) if !is_no_data(&e) => return Err(e),
                        _ => {}
                    }
                } else {
                    self.store_xattr(t, kind.xattr_name(), &acl.encode(), flags)?;
                }
                if old & 0o777 != bits {
                    Self::object_chmod(&t, (old & 0o7000) | bits)?;
                }
                Ok(())
            }
        }
    }

    /// After a chmod of the object: its access ACL follows the new mode (`posix_acl_chmod`).
    pub fn acl_chmod(&self, t: XattrTarget<'_>, mode: u32) -> Result<()> {
        let Some(mut acl) = self.get_acl(t, AclKind::Access)? else {
            return Ok(());
        };
        acl.chmod(mode);
        self.store_xattr(t, AclKind::Access.xattr_name(), &acl.encode(), 0)
    }

    /// The mode and ACLs of a new object in `parent` (`posix_acl_create`): without a default
    /// ACL the umask applies; with one, the default ACL masks the mode instead.
    pub fn inherit_acl(
        &self,
        parent: &Dir,
        mode: u32,
        umask: u32,
        is_dir: bool,
    ) -> Result<Inherited> {
        let Some(default) = self.get_acl(XattrTarget::Dir(parent), AclKind::Default)? else {
            return Ok(Inherited {
                mode: mode & !(umask & 0o777),
                access: None,
                default: None,
            });
        };
        let mut access = default.clone();
        let mut mode = mode;
        let needed = access.create_masq(&mut mode);
        Ok(Inherited {
            mode,
            access: needed.then_some(access),
            default: is_dir.then_some(default),
        })
    }

    /// Stores inherited ACLs on the new object (its mode is already the inherited one).
    pub fn store_inherited(&self, t: XattrTarget<'_>, inh: &Inherited) -> Result<()> {
        if let Some(a) = &inh.access {
            self.store_xattr(t, AclKind::Access.xattr_name(), &a.encode(), 0)?;
        }
        if let Some(d) = &inh.default
            && matches!(t, XattrTarget::Dir(_))
        {
            self.store_xattr(t, AclKind::Default.xattr_name(), &d.encode(), 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = XATTR_VERSION.to_le_bytes().to_vec();
        for (t, p, i) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&i.to_le_bytes());
        }
        v
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn minimal_acl_is_the_mode() {
        let a = Acl::decode(&enc(&[(1, 6, U), (4, 4, U), (0x20, 0, U)])).unwrap();
        assert_eq!(a.equiv_mode(), (0o640, true));
        assert_eq!(Acl::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn named_entry_needs_a_mask_and_keeps_its_bits_on_chmod() {
        assert!(Acl::decode(&enc(&[(1, 6, U), (2, 4, 65534), (4, 4, U), (0x20, 0, U)])).is_err());
        let mut a = Acl::decode(&enc(&[
            (0x20, 0, U),
            (1, 6, U),
            (2, 4, 65534),
            (4, 0, U),
            (0x10, 4, U),
        ]))
        .unwrap();
        assert_eq!(a.equiv_mode(), (0o640, false));
        a.chmod(0o700);
        assert_eq!(a.perm_of(TAG_MASK), 0);
        assert_eq!(a.perm_of(TAG_USER), 4);
        assert_eq!(a.perm_of(TAG_GROUP_OBJ), 0);
        assert_eq!(a.equiv_mode(), (0o700, false));
    }

    #[test]
    fn rejects_bad_encodings() {
        assert!(Acl::decode(&[]).is_err());
        assert!(Acl::decode(&enc(&[(1, 6, U), (4, 4, U)])).is_err());
        assert!(Acl::decode(&enc(&[(1, 8, U), (4, 4, U), (0x20, 0, U)])).is_err());
        let mut v = enc(&[(1, 6, U), (4, 4, U), (0x20, 0, U)]);
        v[0] = 1;
        assert!(Acl::decode(&v).is_err());
        assert!(
            Acl::decode(&enc(&[
                (1, 6, U),
                (2, 4, 5),
                (2, 4, 5),
                (4, 4, U),
                (0x10, 7, U),
                (0x20, 0, U)
            ]))
            .is_err()
        );
    }

    #[test]
    fn create_masq_as_the_kernel() {
        let mut a = Acl::decode(&enc(&[
            (1, 7, U),
            (2, 7, 65534),
            (4, 5, U),
            (0x10, 7, U),
            (0x20, 5, U),
        ]))
        .unwrap();
        let mut mode = 0o666;
        assert!(a.create_masq(&mut mode));
        assert_eq!(mode, 0o664);
        assert_eq!(a.perm_of(TAG_MASK), 6);
        assert_eq!(a.perm_of(TAG_USER), 7);
        let mut plain = Acl::decode(&enc(&[(1, 7, U), (4, 5, U), (0x20, 0, U)])).unwrap();
        let mut mode = 0o777;
        assert!(!plain.create_masq(&mut mode));
        assert_eq!(mode, 0o750);
    }
}
