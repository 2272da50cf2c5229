//! The `kv-emulator` binary: `--ca-out`, `--port`, the `ready <url>` line, and the control API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_prints_ready_and_writes_ca() {
    let dir = std::env::temp_dir().join(format!("kv-emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv-emulator"))
        .args(["--ca-out", ca.to_str().expect("utf8"), "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let url = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready line")
        .to_string();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    let pem = std::fs::read_to_string(&ca).expect("ca written");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let result = rt.block_on(async {
        let c = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
            .build()
            .expect("client");
        let r = c.get(format!("{url}_emulator/health")).send().await?;
        let ok = r.status().as_u16();
        let r = c.post(format!("{url}_emulator/keys/kek")).send().await?;
        Ok::<_, reqwest::Error>((ok, r.status().as_u16(), r.text().await?))
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (health, created, body) = result.expect("requests");
    assert_eq!((health, created), (200, 200));
    assert!(body.contains(&format!("{url}keys/kek/")), "{body}");
}
