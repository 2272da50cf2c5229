//! Generated documentation: the man pages (`clap_mangen`) and the shell completions
//! (`clap_complete`), both from the clap definitions of `cli`, so they never drift from the
//! flags. `cmkfs completions SHELL` prints one completion script; the hidden
//! `cmkfs generate-man DIR` writes every man page. `scripts/check-generated.sh` (run by CI)
//! fails when the committed copies in `docs/man/` and `completions/` differ from these.
//!
//! The prose sections that clap cannot know (config file, fstab, errors seen by applications,
//! ...) are kept here as data, next to the code that renders them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;
use roff::{Roff, bold, roman};

/// The shells `cmkfs completions` writes for, and the file each goes to in `completions/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn shell(self) -> Shell {
        match self {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }

    /// The file name that shell's completion loader looks for.
    pub fn file_name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "cmkfs",
            CompletionShell::Zsh => "_cmkfs",
            CompletionShell::Fish => "cmkfs.fish",
        }
    }
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
    /// Write the script to DIR (as cmkfs, _cmkfs or cmkfs.fish) instead of standard output.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct GenerateManArgs {
    /// Where to write cmkfs.8 and one cmkfs-COMMAND.8 per subcommand.
    pub dir: PathBuf,
}

/// `cmkfs completions SHELL [--out-dir DIR]`.
pub fn completions(a: CompletionsArgs) -> Result<(), String> {
    let mut cmd = super::Cli::command();
    match a.out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(a.shell.shell(), &mut cmd, "cmkfs", &mut out);
            out.flush()
                .map_err(|e| format!("cannot write the completion script: {e}"))
        }
        Some(dir) => {
            let mut buf = Vec::new();
            clap_complete::generate(a.shell.shell(), &mut cmd, "cmkfs", &mut buf);
            write_file(&dir.join(a.shell.file_name()), &buf)
        }
    }
}

/// `cmkfs generate-man DIR`: cmkfs.8 (commands, and the prose sections below) and one page per
/// visible subcommand, all in section 8, with no date so the output is reproducible.
pub fn man_pages(a: GenerateManArgs) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", a.dir.display()))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut main = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration");
    render_main(&man, &mut main).map_err(|e| format!("cannot render cmkfs.8: {e}"))?;
    write_file(&a.dir.join("cmkfs.8"), &main)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, &a.dir)?;
    }
    Ok(())
}

fn render_main(man: &clap_mangen::Man, w: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::new();
    for section in SECTIONS {
        roff.control("SH", [section.title]);
        for item in section.items {
            match item {
                Item::Para(text) => {
                    roff.control("PP", []).text([roman(*text)]);
                }
                Item::Term(term, text) => {
                    roff.control("TP", [])
                        .text([bold(*term)])
                        .text([roman(*text)]);
                }
                Item::Example(text) => {
                    roff.control("PP", [])
                        .control("nf", [])
                        .text([roman(*text)])
                        .control("fi", []);
                }
            }
        }
    }
    roff.to_writer(w)?;
    man.render_version_section(w)
}

fn sub_pages(cmd: &clap::Command, dir: &Path) -> Result<(), String> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration");
    let mut buf = Vec::new();
    man.render(&mut buf)
        .map_err(|e| format!("cannot render {}: {e}", man.get_filename()))?;
    write_file(&dir.join(man.get_filename()), &buf)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One section of prose in cmkfs.8.
struct Section {
    title: &'static str,
    items: &'static [Item],
}

enum Item {
    Para(&'static str),
    /// A tagged paragraph: the term in bold, then its text.
    Term(&'static str, &'static str),
    /// Lines shown as they are.
    Example(&'static str),
}

const SECTIONS: &[Section] = &[
    Section {
        title: "CUSTOMER-MANAGED KEYS",
        items: &[
            Item::Para(
                "--cmk https://VAULT/keys/NAME (init, key set-cmk) binds the volume to an RSA key in Azure Key Vault (or an AES key in Managed HSM); data keys are wrapped by the service key and then by the CMK (RSA-OAEP-256), with the versioned key id stored beside each. Init, mount, fsck and the key commands take --azure-credential managed-identity[:CLIENT_ID] | workload-identity | client-secret:TENANT:CLIENT_ID:SECRET_FILE | developer-tools | access-token-file:PATH, --ca-file PEM, --no-verify-challenge-resource and --key-vault-timeout. Mount also takes --revocation-check-interval (default 30 s) and --audit-log FILE (default /var/log/cmkfs/audit.log).",
            ),
            Item::Para(
                "Revoking the CMK (disable, delete, deny access) flushes the data keys, drops the kernel's cached pages and fails every access with EKEYREVOKED until the key is enabled again; an unreachable vault is an outage, not a revocation.",
            ),
        ],
    },
    Section {
        title: "MOUNT OPTIONS",
        items: &[
            Item::Para(
                "ro, allow_other (implies default_permissions), allow_root, default_permissions, nosuid, nodev, noexec, noatime, atime, relatime (default), strictatime, nodiratime, sync, dirsync, fsname=NAME, nonempty (mount over a non-empty directory), read_ahead_kb=N (kernel read-ahead of the mount, default 1024), writeback_cache (kernel write-back cache; opt-in: a write on a full disk then fails only at flush or fsync).",
            ),
            Item::Para(
                "Every flag is also an option: service_key=FILE, config=FILE, log_file=FILE, log_target=TARGET, threads=N, cache_capacity=N, cache_max_age=S, revocation_check_interval=S, audit_log=FILE, azure_credential=SPEC, ca_file=PEM, no_verify_challenge_resource, key_vault_timeout=S, metrics_listen=ADDR, metrics_socket=PATH, foreground, fips=required (refuse to mount unless this is the fips build, AWS-LC-FIPS in FIPS mode). nofail, _netdev, x-* and the other fstab-only options are ignored.",
            ),
        ],
    },
    Section {
        title: "CONFIG FILE",
        items: &[
            Item::Para(
                "/etc/cmkfs/NAME.toml (for cmkfs@NAME.service); flags override it. Unknown keys and bad values fail at start with the file, line and key named.",
            ),
            Item::Term(
                "name",
                "instance name; the control socket is also /run/cmkfs/NAME.sock",
            ),
            Item::Term("backing, mountpoint", "paths"),
            Item::Term("service_key", "path of the service key file"),
            Item::Term(
                "service_key_credential",
                "name of a systemd credential holding the service key ($CREDENTIALS_DIRECTORY/NAME)",
            ),
            Item::Term(
                "options",
                "mount options, a list or one comma-separated string",
            ),
            Item::Term(
                "foreground, log_file, log_level, log_target, threads, cache_capacity, cache_max_age",
                "as the flags (log_level is a tracing filter; RUST_LOG wins)",
            ),
            Item::Term(
                "azure_credential, ca_file, verify_challenge_resource, key_vault_timeout, revocation_check_interval, audit_log",
                "as the Key Vault and audit flags (verify_challenge_resource = false is --no-verify-challenge-resource)",
            ),
            Item::Term(
                "metrics_listen, metrics_socket",
                "as --metrics-listen and --metrics-socket: where the Prometheus metrics are served",
            ),
            Item::Term(
                "fips",
                "\"required\": refuse to mount unless this is the fips build in FIPS mode; \"auto\" (default): the fips build enters FIPS mode, the default build runs without it.",
            ),
        ],
    },
    Section {
        title: "FSTAB",
        items: &[
            Item::Example(
                "/srv/backing /mnt/data fuse.cmkfs config=/etc/cmkfs/data.toml,allow_other,nofail 0 0",
            ),
            Item::Para(
                "mount(8) runs /sbin/mount.fuse.cmkfs, which runs cmkfs BACKING MOUNTPOINT -o OPTIONS: without a subcommand, the arguments mean mount.",
            ),
        ],
    },
    Section {
        title: "LOGGING",
        items: &[Item::Para(
            "Under systemd (stderr is the journal stream named by JOURNAL_STREAM and no --log-file is given), or with --log-target journald, log records go to the journal with structured fields: CMKFS_VOLUME, CMKFS_MOUNTPOINT and CMKFS_BACKING on every record, CMKFS_KEY (key id) on key events, CMKFS_ERRNO and CMKFS_PATH (plaintext path) on failed requests, CMKFS_FILE (backing path) on integrity failures; SYSLOG_IDENTIFIER=cmkfs. For example: journalctl -t cmkfs CMKFS_ERRNO=5. Otherwise lines go to --log-file or stderr, as text. The level comes from RUST_LOG or log_level (default info).",
        )],
    },
    Section {
        title: "METRICS",
        items: &[Item::Para(
            "With --metrics-listen ADDR (HOST:PORT; a loopback address is recommended) or --metrics-socket PATH (a Unix socket, mode 0600) the daemon serves GET /metrics in the Prometheus text format: FUSE requests and errors per operation, bytes read and written, data-key cache hits, misses, evictions and entries, Key Vault calls and their latency by operation and outcome, the revocation state of the customer-managed key and the time since its last successful check, audit records written, open files and the daemon's resident memory. Off by default.",
        )],
    },
    Section {
        title: "ERRORS SEEN BY APPLICATIONS",
        items: &[
            Item::Term(
                "EIO",
                "a block, header, name or xattr failed authentication (the daemon logs the path and block), or a key service is unreachable and the key is not cached",
            ),
            Item::Term(
                "EKEYREVOKED",
                "the customer-managed key protecting the file was revoked",
            ),
            Item::Term(
                "ENAMETOOLONG",
                "a name over 255 bytes or a symlink target over 3018 bytes",
            ),
            Item::Term(
                "ENOSPC, EDQUOT, EROFS, ...",
                "passed through from the backing filesystem",
            ),
            Item::Term(
                "EOPNOTSUPP",
                "POSIX ACL xattrs without default_permissions (tools fall back to chmod)",
            ),
        ],
    },
    Section {
        title: "FILES",
        items: &[Item::Para(
            "/etc/cmkfs/NAME.toml, /etc/cmkfs/keys/NAME.key, /var/lib/cmkfs/keys/, /var/log/cmkfs/audit.log, /run/cmkfs/",
        )],
    },
    Section {
        title: "SEE ALSO",
        items: &[Item::Para(
            "mount.fuse3(8), systemd.exec(5); /usr/share/doc/cmkfs for the on-disk format, the threat model, key hierarchy, recovery and service documents.",
        )],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_the_prose() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(GenerateManArgs {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        let main = std::fs::read_to_string(dir.path().join("cmkfs.8")).unwrap();
        assert!(main.starts_with(".ie") || main.contains(".TH cmkfs 8"));
        for section in SECTIONS {
            assert!(main.contains(section.title), "{} missing", section.title);
        }
        for page in [
            "cmkfs-mount.8",
            "cmkfs-key-rotate.8",
            "cmkfs-audit-verify.8",
        ] {
            assert!(dir.path().join(page).exists(), "{page} missing");
        }
        assert!(!dir.path().join("cmkfs-generate-man.8").exists());
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let dir = tempfile::tempdir().unwrap();
            completions(CompletionsArgs {
                shell,
                out_dir: Some(dir.path().to_path_buf()),
            })
            .unwrap();
            let text = std::fs::read_to_string(dir.path().join(shell.file_name())).unwrap();
            assert!(text.contains("reencrypt") && text.contains("service-key"));
        }
    }
}
