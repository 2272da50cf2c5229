//! The emulator from plain `#[test]` functions (no outer runtime): raw HTTPS checks with reqwest's
//! blocking-free async client driven by a local runtime, the control API, and the dead port.

mod common;

use kv_emulator::Emulator;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn http(emu: &Emulator) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("pem"))
        .build()
        .expect("client")
}

#[test]
fn challenge_errors_and_control_api() {
    let emu = Emulator::start();
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let dir = std::env::temp_dir().join(format!("kv-emulator-ca-{}.pem", emu.port()));
    emu.write_ca_file(&dir).expect("write ca");
    assert!(
        std::fs::read_to_string(&dir)
            .expect("read")
            .contains("BEGIN CERTIFICATE")
    );
    let _ = std::fs::remove_file(&dir);

    let c = http(&emu);
    let url = emu.url();
    rt().block_on(async {
        // Control API: create a key, inspect it.
        let r = c
            .post(format!("{url}_emulator/keys/kek?size=2048"))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        let version = v["version"].as_str().expect("version").to_string();

        // 401 challenge with header and body.
        let r = c
            .get(format!("{url}keys/kek/?api-version=2025-07-01"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
        let h = r
            .headers()
            .get("www-authenticate")
            .expect("challenge")
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            h.contains("authorization=\"https://login.microsoftonline.com/"),
            "{h}"
        );
        assert!(h.contains("resource=\"https://vault.azure.net\""), "{h}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "Unauthorized");

        let auth = |rb: reqwest::RequestBuilder| rb.header("authorization", "Bearer t");
        // Bad JSON, bad base64, unknown route, wrong method: proper error bodies.
        for (rb, status, code) in [
            (
                auth(c.post(format!("{url}keys/kek//wrapkey")).body("{oops")),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/kek//wrapkey"))
                        .body(r#"{"alg":"RSA-OAEP-256","value":"@@"}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/kek//wrapkey"))
                        .body(r#"{"alg":"RSA1_5","value":"AA"}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/kek/{version}/unwrapkey"))
                        .body(r#"{"alg":"RSA-OAEP-256","value":"AAAA"}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(c.post(format!("{url}keys/kek//wrapkey"))),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/bad_name/create"))
                        .body(r#"{"kty":"RSA"}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/kek/create"))
                        .body(r#"{"kty":"RSA","key_size":1000}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.post(format!("{url}keys/kek/create"))
                        .body(r#"{"kty":"EC"}"#),
                ),
                400,
                "BadParameter",
            ),
            (
                auth(
                    c.patch(format!("{url}keys/kek/"))
                        .body(r#"{"attributes":{"exp":"soon"}}"#),
                ),
                400,
                "BadParameter",
            ),
            (auth(c.get(format!("{url}secrets/x"))), 404, "NotFound"),
            (
                auth(c.put(format!("{url}keys/kek/create"))),
                405,
                "MethodNotAllowed",
            ),
            (auth(c.get(format!("{url}keys/nope/"))), 404, "KeyNotFound"),
        ] {
            let r = rb.send().await.expect("send");
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(
                r.headers()
                    .get("x-ms-error-code")
                    .and_then(|h| h.to_str().ok()),
                Some(code)
            );
            let body: serde_json::Value = r.json().await.expect("json body");
            assert_eq!(body["error"]["code"], code, "{body}");
        }

        // Control: deny-all via HTTP.
        assert_eq!(
            c.post(format!("{url}_emulator/deny"))
                .send()
                .await
                .expect("deny")
                .status(),
            200
        );
        let r = auth(c.get(format!("{url}keys/kek/")))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
        c.post(format!("{url}_emulator/allow"))
            .send()
            .await
            .expect("allow");

        // Control: fault with Retry-After, counters, log.
        c.post(format!(
            "{url}_emulator/faults?kind=429&count=1&retry_after=7"
        ))
        .send()
        .await
        .expect("fault");
        let r = auth(c.get(format!("{url}keys/kek/")))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 429);
        assert_eq!(
            r.headers().get("retry-after").and_then(|h| h.to_str().ok()),
            Some("7")
        );
        let counters: serde_json::Value = c
            .get(format!("{url}_emulator/counters"))
            .send()
            .await
            .expect("c")
            .json()
            .await
            .expect("json");
        assert_eq!(counters["ops"]["get"], 3);
        assert_eq!(counters["ops"]["unauthorized"], 1);
        let log: serde_json::Value = c
            .get(format!("{url}_emulator/log"))
            .send()
            .await
            .expect("l")
            .json()
            .await
            .expect("json");
        assert_eq!(
            log.as_array().map(Vec::len),
            Some(counters["total"].as_u64().expect("n") as usize + 1)
        );
        let state: serde_json::Value = c
            .get(format!("{url}_emulator/keys/kek"))
            .send()
            .await
            .expect("s")
            .json()
            .await
            .expect("json");
        assert_eq!(state["versions"][0]["version"], version.as_str());
        let r = c
            .post(format!("{url}_emulator/faults?kind=bogus"))
            .send()
            .await
            .expect("bad fault");
        assert_eq!(r.status(), 400);
    });
    assert_eq!(emu.count("unknown"), 2);
}

#[test]
fn stopped_emulator_refuses_connections() {
    let mut emu = Emulator::start();
    let addr = emu.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    emu.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port must be dead after stop()"
    );
    emu.stop(); // idempotent

    let emu2 = Emulator::start();
    let addr2 = emu2.addr();
    drop(emu2);
    assert!(
        std::net::TcpStream::connect(addr2).is_err(),
        "port must be dead after drop"
    );
}

#[test]
fn sdk_from_plain_test_with_local_runtime() {
    let emu = Emulator::start();
    let kid = emu.create_rsa_key("kek");
    let client = common::key_client(&emu.url(), &emu.ca_pem(), "t");
    rt().block_on(async {
        let k = client
            .get_key("kek", None)
            .await
            .expect("get")
            .into_model()
            .expect("m");
        assert_eq!(k.key.and_then(|j| j.kid).as_deref(), Some(kid.as_str()));
    });
}
