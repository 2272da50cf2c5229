//! Managed HSM symmetric keys (`oct-HSM`, AES-256, `A256KW`) with the real SDK, plus the raw REST
//! and control API surface for them.

mod common;

use azure_security_keyvault_keys::models::{
    CreateKeyParameters, EncryptionAlgorithm, KeyAttributes, KeyClientUpdateKeyPropertiesOptions,
    KeyClientWrapKeyOptions, KeyOperationParameters, KeyType, UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, ResourceExt};
use common::{error_parts, key_client, oaep256};
use kv_emulator::Emulator;

const SECRET: [u8; 40] = [0x5au8; 40];

fn kw(value: Vec<u8>) -> KeyOperationParameters {
    KeyOperationParameters {
        algorithm: Some(EncryptionAlgorithm::A256Kw),
        value: Some(value),
        ..Default::default()
    }
}

async fn wrap(
    client: &KeyClient,
    name: &str,
    version: Option<&str>,
    value: &[u8],
) -> azure_core::Result<(String, Vec<u8>)> {
    let opts = version.map(|v| KeyClientWrapKeyOptions {
        key_version: Some(v.to_string()),
        ..Default::default()
    });
    let w = client
        .wrap_key(name, kw(value.to_vec()).try_into()?, opts)
        .await?
        .into_model()?;
    let version = w.resource_id()?.version.expect("versioned kid");
    Ok((version, w.result.expect("wrapped value")))
}

async fn unwrap(
    client: &KeyClient,
    name: &str,
    version: &str,
    wrapped: &[u8],
) -> azure_core::Result<Vec<u8>> {
    let r = client
        .unwrap_key(name, version, kw(wrapped.to_vec()).try_into()?, None)
        .await?
        .into_model()?;
    Ok(r.result.unwrap_or_default())
}

#[tokio::test]
async fn sdk_create_wrap_unwrap_rotate_disable() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");

    // Create through the SDK.
    let params = CreateKeyParameters {
        kty: Some(KeyType::OctHsm),
        key_size: Some(256),
        ..Default::default()
    };
    let key = client
        .create_key("aes", params.try_into().expect("params"), None)
        .await
        .expect("create")
        .into_model()
        .expect("model");
    let jwk = key.key.expect("jwk");
    assert_eq!(jwk.kty, Some(KeyType::OctHsm));
    assert!(
        jwk.n.is_none() && jwk.e.is_none() && jwk.k.is_none(),
        "no key material in the bundle"
    );
    let ops: Vec<String> = jwk
        .key_ops
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert!(
        ops.iter().any(|o| o == "wrapKey") && ops.iter().any(|o| o == "unwrapKey"),
        "{ops:?}"
    );
    let kid = jwk.kid.expect("kid");
    assert!(kid.starts_with(&format!("{}keys/aes/", emu.url())), "{kid}");

    // Wrap 40 bytes → 48 bytes; unwrap with the exact version.
    let (v1, wrapped) = wrap(&client, "aes", None, &SECRET).await.expect("wrap");
    assert!(kid.ends_with(&v1));
    assert_eq!(wrapped.len(), 48);
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped).await.expect("unwrap"),
        SECRET
    );

    // Wrong algorithm on an oct key → 400 BadParameter.
    let e = client
        .wrap_key("aes", oaep256(SECRET.to_vec()).try_into().expect("p"), None)
        .await
        .expect_err("RSA alg on oct");
    assert_eq!(error_parts(e), (400, Some("BadParameter".into()), None));
    let e = client
        .unwrap_key(
            "aes",
            &v1,
            oaep256(wrapped.clone()).try_into().expect("p"),
            None,
        )
        .await
        .expect_err("RSA alg");
    assert_eq!(error_parts(e).0, 400);
    // Corrupted ciphertext → 400.
    let mut bad = wrapped.clone();
    bad[5] ^= 0x80;
    let (status, code, _) = error_parts(
        unwrap(&client, "aes", &v1, &bad)
            .await
            .expect_err("corrupt"),
    );
    assert_eq!((status, code.as_deref()), (400, Some("BadParameter")));

    // Rotate: new version is oct-HSM too; the old version still unwraps its ciphertext.
    let rotated = client
        .rotate_key("aes", None)
        .await
        .expect("rotate")
        .into_model()
        .expect("model");
    assert_eq!(
        rotated.key.as_ref().and_then(|k| k.kty.clone()),
        Some(KeyType::OctHsm)
    );
    let v2 = rotated
        .resource_id()
        .expect("kid")
        .version
        .expect("version");
    assert_ne!(v1, v2);
    let (wv, wrapped2) = wrap(&client, "aes", None, &SECRET)
        .await
        .expect("wrap latest");
    assert_eq!(wv, v2);
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped)
            .await
            .expect("unwrap old version"),
        SECRET
    );
    assert_eq!(
        unwrap(&client, "aes", &v2, &wrapped2)
            .await
            .expect("unwrap new version"),
        SECRET
    );
    let e = unwrap(&client, "aes", &v2, &wrapped)
        .await
        .expect_err("wrong version");
    assert_eq!(error_parts(e).0, 400);
    let (wv, _) = wrap(&client, "aes", Some(&v1), &SECRET)
        .await
        .expect("wrap explicit version");
    assert_eq!(wv, v1);

    // Disable v1 through the SDK → 403 KeyDisabled for unwrap and wrap.
    let o = KeyClientUpdateKeyPropertiesOptions {
        key_version: Some(v1.clone()),
        ..Default::default()
    };
    let params = UpdateKeyPropertiesParameters {
        key_attributes: Some(KeyAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .update_key_properties("aes", params.try_into().expect("p"), Some(o))
        .await
        .expect("update");
    let e = unwrap(&client, "aes", &v1, &wrapped)
        .await
        .expect_err("disabled");
    assert_eq!(
        error_parts(e),
        (403, Some("Forbidden".into()), Some("KeyDisabled".into()))
    );
    let e = wrap(&client, "aes", Some(&v1), &SECRET)
        .await
        .expect_err("wrap disabled");
    assert_eq!(error_parts(e).2.as_deref(), Some("KeyDisabled"));
    assert_eq!(
        unwrap(&client, "aes", &v2, &wrapped2)
            .await
            .expect("v2 still enabled"),
        SECRET
    );
    emu.disable_key("aes").expect("disable all");
    let e = unwrap(&client, "aes", &v2, &wrapped2)
        .await
        .expect_err("disabled key");
    assert_eq!(error_parts(e).2.as_deref(), Some("KeyDisabled"));
    emu.enable_key("aes").expect("enable");
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped)
            .await
            .expect("re-enabled"),
        SECRET
    );

    // Counters see the oct operations like any other.
    assert!(emu.count("unwrapkey") >= 8);
}

#[tokio::test]
async fn rust_api_oct_key_and_common_semantics() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    let kid = emu.create_oct_key("aes");
    let v1 = emu.latest_version("aes").expect("latest");
    assert_eq!(kid, format!("{}/keys/aes/{v1}", emu.base()));
    assert!(emu.try_create_oct_key("bad_name").is_err());

    // RSA key: A256KW → 400 BadParameter.
    emu.create_rsa_key("rsa");
    let e = wrap(&client, "rsa", None, &SECRET)
        .await
        .expect_err("A256KW on RSA");
    assert_eq!(error_parts(e), (400, Some("BadParameter".into()), None));

    let (v, wrapped) = wrap(&client, "aes", None, &SECRET).await.expect("wrap");
    assert_eq!(v, v1);

    // exp in the past: wrap 403 KeyExpired, unwrap still works.
    emu.set_exp("aes", "", Some(1)).expect("exp");
    let e = wrap(&client, "aes", None, &SECRET)
        .await
        .expect_err("expired");
    assert_eq!(error_parts(e).2.as_deref(), Some("KeyExpired"));
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped)
            .await
            .expect("unwrap expired"),
        SECRET
    );
    emu.set_exp("aes", "", None).expect("clear exp");

    // Rust rotate keeps the type.
    emu.rotate_key("aes").expect("rotate");
    let (v2, w2) = wrap(&client, "aes", None, &SECRET).await.expect("wrap v2");
    assert_ne!(v2, v1);
    assert_eq!(w2.len(), 48);

    // deny-all, delete → 404, recover.
    emu.deny_all();
    let e = unwrap(&client, "aes", &v1, &wrapped)
        .await
        .expect_err("denied");
    assert_eq!(error_parts(e).2.as_deref(), Some("AccessDenied"));
    emu.restore_access();
    emu.delete_key("aes").expect("delete");
    let e = unwrap(&client, "aes", &v1, &wrapped)
        .await
        .expect_err("deleted");
    assert_eq!(error_parts(e), (404, Some("KeyNotFound".into()), None));
    emu.recover_key("aes").expect("recover");
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped)
            .await
            .expect("recovered"),
        SECRET
    );

    // Faults apply equally.
    emu.inject_failure_for("unwrapkey", kv_emulator::Fault::ServiceUnavailable, Some(1));
    assert_eq!(
        error_parts(
            unwrap(&client, "aes", &v1, &wrapped)
                .await
                .expect_err("503")
        )
        .0,
        503
    );
    assert_eq!(
        unwrap(&client, "aes", &v1, &wrapped)
            .await
            .expect("after fault"),
        SECRET
    );
}

#[tokio::test]
async fn rest_and_control_api() {
    let emu = Emulator::start();
    let url = emu.url();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let auth = |rb: reqwest::RequestBuilder| rb.header("authorization", "Bearer t");

    // Control API create with kty.
    let r = c
        .post(format!("{url}_emulator/keys/ctl?kty=oct-HSM"))
        .send()
        .await
        .expect("ctl create");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["kid"].as_str().expect("kid").contains("/keys/ctl/"));
    let state: serde_json::Value = c
        .get(format!("{url}_emulator/keys/ctl"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["versions"][0]["kty"], "oct-HSM");
    assert_eq!(state["versions"][0]["key_size"], 256);
    let r = c
        .post(format!("{url}_emulator/keys/ctl2?kty=EC"))
        .send()
        .await
        .expect("bad kty");
    assert_eq!(r.status(), 400);

    // REST create with kty "oct" → bundle says oct-HSM, no n/e.
    let r = auth(
        c.post(format!("{url}keys/raw/create?api-version=7.5"))
            .body(r#"{"kty":"oct","key_size":256}"#),
    )
    .send()
    .await
    .expect("create");
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.expect("json");
    assert_eq!(b["key"]["kty"], "oct-HSM");
    assert!(
        b["key"].get("n").is_none() && b["key"].get("e").is_none(),
        "{b}"
    );
    let ops = b["key"]["key_ops"].as_array().expect("ops");
    assert!(ops.contains(&"wrapKey".into()) && ops.contains(&"unwrapKey".into()));

    // Wrong size → 400; encrypt on oct → 400; wrap works and gives 48 bytes for 40.
    for (body, path) in [
        (r#"{"kty":"oct-HSM","key_size":128}"#, "keys/raw/create"),
        (
            r#"{"alg":"A256KW","value":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
            "keys/raw//encrypt",
        ),
        (
            r#"{"alg":"RSA-OAEP-256","value":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
            "keys/raw//wrapkey",
        ),
        (
            r#"{"alg":"A256KW","value":"AAAAAAAA"}"#,
            "keys/raw//wrapkey",
        ),
        (
            r#"{"alg":"A256KW","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            "keys/raw//unwrapkey",
        ),
    ] {
        let r = auth(c.post(format!("{url}{path}")).body(body))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "{path} {body}");
        assert_eq!(
            r.headers()
                .get("x-ms-error-code")
                .map(|h| h.to_str().expect("ascii")),
            Some("BadParameter")
        );
        let e: serde_json::Value = r.json().await.expect("json");
        assert_eq!(e["error"]["code"], "BadParameter");
    }
    let forty = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWg"; // base64url of 40 x 'Z'
    let r = auth(
        c.post(format!("{url}keys/raw//wrapkey"))
            .body(format!(r#"{{"alg":"A256KW","value":"{forty}"}}"#)),
    )
    .send()
    .await
    .expect("wrap");
    assert_eq!(r.status(), 200);
    let w: serde_json::Value = r.json().await.expect("json");
    let wrapped = w["value"].as_str().expect("value").to_string();
    assert_eq!(wrapped.len(), 64, "48 bytes base64url");
    let r = auth(
        c.post(format!("{url}keys/raw//unwrapkey"))
            .body(format!(r#"{{"alg":"A256KW","value":"{wrapped}"}}"#)),
    )
    .send()
    .await
    .expect("unwrap");
    assert_eq!(r.status(), 200);
    let u: serde_json::Value = r.json().await.expect("json");
    assert_eq!(u["value"], forty);
}
