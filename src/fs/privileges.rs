//! Set-user-ID and set-group-ID bits that a modification takes away. With
//! `FUSE_HANDLE_KILLPRIV_V2` negotiated the kernel leaves this to the filesystem, and in
//! exchange stops asking for `security.capability` before every write (one FUSE round trip per
//! `write(2)`). The rules are the VFS's: a write, truncate or fallocate by a caller without
//! CAP_FSETID clears S_ISUID, and S_ISGID when the group may execute or the caller is not in
//! the file's group. A chown clears them too; the backing filesystem does that on our own
//! `fchown`. `security.capability` stays the kernel's job (it still removes it on the first
//! write).

/// Who asked, as the kernel tells us.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// CAP_FSETID's bit in a capability set.
const CAP_FSETID: u32 = 4;

/// `perm` (of a file owned by group `file_gid`) without the set-ID bits a modification by
/// `caller`, who lacks CAP_FSETID, clears; `None` when nothing changes.
pub fn without_privileges(perm: u16, file_gid: u32, caller: Caller) -> Option<u16> {
    let (suid, sgid, gx) = (
        libc::S_ISUID as u16,
        libc::S_ISGID as u16,
        libc::S_IXGRP as u16,
    );
    let mut m = perm & !suid;
    // Set-group-ID without group execute marks mandatory locking rather than a privilege: it
    // goes only when the caller is not in the file's group.
    if perm & sgid != 0 && (perm & gx != 0 || !in_group(caller, file_gid)) {
        m &= !sgid;
    }
    (m != perm).then_some(m)
}

/// Whether setting an access ACL by `caller` keeps the set-group-ID bit of a file owned by
/// group `file_gid` (`posix_acl_update_mode`: only for members of the group or holders of
/// CAP_FSETID).
pub fn keeps_sgid_on_acl(file_gid: u32, caller: Caller) -> bool {
    in_group(caller, file_gid) || caller_has_fsetid(caller)
}

/// Whether `caller` belongs to group `gid` (primary or supplementary; unknown counts as no).
fn in_group(caller: Caller, gid: u32) -> bool {
    caller.gid == gid
        || proc_status(caller.pid).is_some_and(|s| {
            field(&s, "Groups:").is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
        })
}

fn proc_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The value of line `name` of a `/proc/PID/status` text.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// Whether the caller of a request (kernel `uid`, `pid`) holds CAP_FSETID, so its truncate or
/// fallocate keeps set-ID bits. Only root can (file capabilities aside, which this treats as
/// absent: the bits are then cleared, the safe side); for root the effective set is read from
/// `/proc/PID/status`. A caller that cannot be checked counts as unprivileged.
pub fn caller_has_fsetid(caller: Caller) -> bool {
    if caller.uid != 0 {
        return false;
    }
    proc_status(caller.pid)
        .and_then(|s| effective_caps(&s))
        .is_some_and(|caps| caps & (1 << CAP_FSETID) != 0)
}

/// The `CapEff:` set of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    u64::from_str_radix(field(status, "CapEff:")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Caller = Caller {
        uid: 65534,
        gid: 65534,
        pid: u32::MAX,
    };

    #[test]
    fn clears_suid_always_and_sgid_when_executable_or_not_in_the_group() {
        assert_eq!(without_privileges(0o4755, 0, NOBODY), Some(0o755));
        assert_eq!(without_privileges(0o6755, 0, NOBODY), Some(0o755));
        assert_eq!(without_privileges(0o2755, 0, NOBODY), Some(0o755));
        assert_eq!(without_privileges(0o755, 0, NOBODY), None);
        assert_eq!(without_privileges(0o1777, 0, NOBODY), None);
        // Set-group-ID without group execute: kept for a member of the file's group only.
        assert_eq!(without_privileges(0o2745, 65534, NOBODY), None);
        assert_eq!(without_privileges(0o6745, 65534, NOBODY), Some(0o2745));
        assert_eq!(without_privileges(0o2745, 0, NOBODY), Some(0o745));
    }

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t000001ffffffffef\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffef));
        assert_eq!(effective_caps("Name:\tx\n"), None);
        // This test process, as root: the answer follows its own effective set.
        let me = std::process::id();
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let has = effective_caps(&own).unwrap() & (1 << CAP_FSETID) != 0;
        let root = |pid| Caller {
            uid: 0,
            gid: 0,
            pid,
        };
        assert_eq!(caller_has_fsetid(root(me)), has);
        assert!(!caller_has_fsetid(Caller {
            uid: 1000,
            ..root(me)
        }));
        assert!(!caller_has_fsetid(root(u32::MAX)));
        // Supplementary groups come from the same file.
        let groups = field(&own, "Groups:").unwrap_or("").to_string();
        if let Some(g) = groups.split_whitespace().next() {
            let g: u32 = g.parse().unwrap();
            assert!(in_group(
                Caller {
                    uid: 1,
                    gid: u32::MAX - 1,
                    pid: me
                },
                g
            ));
        }
    }
}
