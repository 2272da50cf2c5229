//! Logging to the journal: with `-o log_target=journald`, or when stderr is the journal stream
//! systemd set up (`JOURNAL_STREAM`), the daemon sends its records to journald with
//! structured fields (volume, mountpoint, errno, plaintext path, backing file); otherwise it
//! logs as before. Without a running journald (a container) the test listens on journald's
//! socket itself and reads the native protocol; with one, it asks `journalctl`.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestVolume, bin, is_mounted, new_entry, run_ok};

const SOCKET: &str = "/run/systemd/journal/socket";

/// The tests share journald's socket path: one at a time.
static JOURNAL: Mutex<()> = Mutex::new(());

type Record = HashMap<String, String>;

/// Where the test reads journal records from.
enum Journal {
    /// Our own listener on journald's socket (removed on drop), drained by a thread into
    /// the list: a full datagram queue would block the daemon's logging threads.
    Fake(Arc<Mutex<Vec<Record>>>, Arc<AtomicBool>, bool),
    /// A real journald: read back through journalctl.
    Real,
}

impl Journal {
    fn open() -> Journal {
        if Path::new(SOCKET).exists() && UnixDatagram::unbound().unwrap().connect(SOCKET).is_ok() {
            return Journal::Real;
        }
        let _ = fs::remove_file(SOCKET);
        let created_dir = !Path::new("/run/systemd/journal").exists();
        fs::create_dir_all("/run/systemd/journal").unwrap();
        let sock = UnixDatagram::bind(SOCKET).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (records.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !s2.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let r = parse_native(&buf[..n]);
                    r2.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            }
        });
        Journal::Fake(records, stop, created_dir)
    }

    /// Records of `volume_id` until `done` holds for the set (or 10 s pass).
    fn records(&self, volume_id: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Record> = match self {
                Journal::Fake(records, _, _) => records
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .filter(|r| r.get("CMKFS_VOLUME").map(String::as_str) == Some(volume_id))
                    .cloned()
                    .collect(),
                Journal::Real => {
                    let out = Command::new("journalctl")
                        .args(["-o", "json", "--no-pager"])
                        .arg(format!("CMKFS_VOLUME={volume_id}"))
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        .map(|v| {
                            v.as_object()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .collect()
                }
            };
            if done(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Journal::Fake(_, stop, created_dir) = self {
            stop.store(true, Ordering::Relaxed);
            let _ = fs::remove_file(SOCKET);
            if *created_dir {
                let _ = fs::remove_dir("/run/systemd/journal");
            }
        }
    }
}

/// journald's native protocol: `NAME=value\n`, or `NAME\n` + 64-bit LE length + bytes + `\n`.
fn parse_native(mut b: &[u8]) -> Record {
    let mut r = Record::new();
    while !b.is_empty() {
        let Some(nl) = b.iter().position(|&c| c == b'\n') else {
            break;
        };
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            r.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            b = &b[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &b[nl + 9..nl + 9 + len];
            r.insert(name, String::from_utf8_lossy(value).into_owned());
            b = &b[(nl + 10 + len).min(b.len())..];
        }
    }
    r
}

fn volume_id(v: &TestVolume) -> String {
    let out = run_ok(Command::new(bin()).arg("status").arg(v.mnt()).arg("--json"));
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    s["volume_id"].as_str().unwrap().to_string()
}

#[test]
fn journald_target_sends_structured_fields() {
    let _one = JOURNAL.lock().unwrap_or_else(|p| p.into_inner());
    let journal = Journal::open();
    let mut v = TestVolume::init_only();
    v.opts = vec!["log_target=journald".into()];
    v.mount();
    let id = volume_id(&v);
    fs::write(v.p("ledger"), vec![7u8; 20_000]).unwrap();
    let backing = new_entry(&v.backing(), &[]);
    v.umount();
    // Damage the last byte (a tag): reading the file now fails authentication.
    let mut bytes = fs::read(&backing).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&backing, &bytes).unwrap();
    v.mount();
    let err = fs::read(v.p("ledger")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));

    let records = journal.records(&id, |r| {
        r.iter().any(|r| r.contains_key("CMKFS_ERRNO"))
            && r.iter().any(|r| r.contains_key("CMKFS_FILE"))
    });
    assert!(
        records.iter().any(|r| r
            .get("MESSAGE")
            .is_some_and(|m| m.contains("mounted and serving"))),
        "{records:#?}"
    );
    let mnt = v.mnt().display().to_string();
    for r in &records {
        assert_eq!(r.get("CMKFS_MOUNTPOINT"), Some(&mnt), "{r:?}");
        assert_eq!(
            r.get("SYSLOG_IDENTIFIER").map(String::as_str),
            Some("cmkfs")
        );
        assert!(r.contains_key("PRIORITY"));
    }
    let failed = records
        .iter()
        .find(|r| r.contains_key("CMKFS_ERRNO"))
        .expect("a record with CMKFS_ERRNO");
    assert_eq!(failed["CMKFS_ERRNO"], libc::EIO.to_string());
    assert_eq!(failed["CMKFS_PATH"], "/ledger");
    assert_eq!(failed["PRIORITY"], "3", "an error");
    let integrity = records
        .iter()
        .find(|r| r.contains_key("CMKFS_FILE"))
        .expect("a record naming the backing file");
    assert!(
        backing.ends_with(integrity["CMKFS_FILE"].trim_start_matches('/'))
            || integrity["CMKFS_FILE"].contains(backing.file_name().unwrap().to_str().unwrap()),
        "{integrity:?} names {}",
        backing.display()
    );
    // The log file named by the fixture got nothing: the journal replaced it.
    assert!(!v.log_contents().contains("mounted and serving"));
    v.umount();
}

/// `JOURNAL_STREAM` is honoured only when it names the daemon's stderr, as systemd sets it.
#[test]
fn auto_target_follows_journal_stream() {
    let _one = JOURNAL.lock().unwrap_or_else(|p| p.into_inner());
    let journal = Journal::open();
    for matching in [true, false] {
        let v = TestVolume::init_only();
        let err_path = v.root().join("stderr");
        let err = fs::File::create(&err_path).unwrap();
        let meta = fs::metadata(&err_path).unwrap();
        let stream = if matching {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let mut child = Command::new(bin())
            .arg("mount")
            .arg(v.backing())
            .arg(v.mnt())
            .arg("--service-key")
            .arg(v.key())
            .arg("--foreground")
            .env("RUST_LOG", "info")
            .env("JOURNAL_STREAM", stream)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !is_mounted(&v.mnt()) {
            assert!(start.elapsed() < Duration::from_secs(30), "no mount");
            assert!(child.try_wait().unwrap().is_none(), "daemon exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        let id = volume_id(&v);
        let records = journal.records(&id, |r| {
            !matching
                || r.iter().any(|r| {
                    r.get("MESSAGE")
                        .is_some_and(|m| m.contains("mounted and serving"))
                })
        });
        run_ok(Command::new(bin()).arg("umount").arg(v.mnt()));
        let _ = child.wait();
        let stderr = fs::read_to_string(&err_path).unwrap();
        if matching {
            assert!(!records.is_empty(), "records went to the journal");
            assert!(!stderr.contains("mounted and serving"), "{stderr}");
        } else {
            assert!(records.is_empty(), "{records:#?}");
            assert!(stderr.contains("mounted and serving"), "{stderr}");
        }
    }
}
