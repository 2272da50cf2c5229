//! End-to-end tests with the real `azure_security_keyvault_keys` client against the emulator.

mod common;

use azure_security_keyvault_keys::models::{
    CreateKeyParameters, KeyAttributes, KeyClientGetKeyOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyClientWrapKeyOptions, KeyType,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{ResourceExt, ResourceId};
use common::{error_parts, key_client, oaep256};
use futures::TryStreamExt;
use kv_emulator::{Emulator, Fault};

const DEK: [u8; 32] = [7u8; 32];

async fn wrap(client: &azure_security_keyvault_keys::KeyClient, name: &str) -> (String, Vec<u8>) {
    let w = client
        .wrap_key(
            name,
            oaep256(DEK.to_vec()).try_into().expect("params"),
            None,
        )
        .await
        .expect("wrap")
        .into_model()
        .expect("model");
    let ResourceId { version, .. } = w.resource_id().expect("kid");
    (
        version.expect("versioned kid"),
        w.result.expect("wrapped value"),
    )
}

async fn unwrap(
    client: &azure_security_keyvault_keys::KeyClient,
    name: &str,
    version: &str,
    wrapped: &[u8],
) -> azure_core::Result<Vec<u8>> {
    let r = client
        .unwrap_key(name, version, oaep256(wrapped.to_vec()).try_into()?, None)
        .await?
        .into_model()?;
    Ok(r.result.unwrap_or_default())
}

#[tokio::test]
async fn create_wrap_unwrap_rotate() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");

    let params = CreateKeyParameters {
        kty: Some(KeyType::Rsa),
        key_size: Some(3072),
        ..Default::default()
    };
    let key = client
        .create_key("kek", params.try_into().expect("params"), None)
        .await
        .expect("create")
        .into_model()
        .expect("model");
    let jwk = key.key.expect("jwk");
    assert_eq!(jwk.n.as_ref().map(Vec::len), Some(384), "key_size honoured");
    let kid = jwk.kid.expect("kid");
    assert!(kid.starts_with(&format!("{}keys/kek/", emu.url())), "{kid}");

    let (v1, wrapped) = wrap(&client, "kek").await;
    assert_eq!(v1.len(), 32);
    assert!(kid.ends_with(&v1));
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("unwrap v1"),
        DEK
    );

    let rotated = client
        .rotate_key("kek", None)
        .await
        .expect("rotate")
        .into_model()
        .expect("model");
    let v2 = rotated
        .resource_id()
        .expect("kid")
        .version
        .expect("version");
    assert_ne!(v1, v2);
    // Latest is v2 now; the old version still unwraps what it wrapped.
    let (wv, wrapped2) = wrap(&client, "kek").await;
    assert_eq!(wv, v2);
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("unwrap old version"),
        DEK
    );
    assert_eq!(
        unwrap(&client, "kek", &v2, &wrapped2)
            .await
            .expect("unwrap new version"),
        DEK
    );
    // Wrong version for a ciphertext → 400 BadParameter.
    let e = unwrap(&client, "kek", &v2, &wrapped)
        .await
        .expect_err("wrong version");
    let (status, code, _) = error_parts(e);
    assert_eq!((status, code.as_deref()), (400, Some("BadParameter")));

    // get by version, and the versions list.
    let opts = KeyClientGetKeyOptions {
        key_version: Some(v1.clone()),
        ..Default::default()
    };
    let k1 = client
        .get_key("kek", Some(opts))
        .await
        .expect("get v1")
        .into_model()
        .expect("model");
    assert_eq!(
        k1.resource_id().expect("kid").version.as_deref(),
        Some(v1.as_str())
    );
    let mut pager = client
        .list_key_properties_versions("kek", None)
        .expect("pager");
    let mut seen = Vec::new();
    while let Some(p) = pager.try_next().await.expect("page") {
        seen.push(p.resource_id().expect("kid").version.expect("version"));
    }
    seen.sort();
    let mut want = vec![v1, v2];
    want.sort();
    assert_eq!(seen, want);

    // Explicit version on wrap.
    let opts = KeyClientWrapKeyOptions {
        key_version: Some(want[0].clone()),
        ..Default::default()
    };
    let w = client
        .wrap_key(
            "kek",
            oaep256(DEK.to_vec()).try_into().expect("p"),
            Some(opts),
        )
        .await
        .expect("wrap v")
        .into_model()
        .expect("m");
    assert_eq!(
        w.resource_id().expect("kid").version.as_deref(),
        Some(want[0].as_str())
    );
}

#[tokio::test]
async fn disabled_version_is_forbidden() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await;

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
    let updated = client
        .update_key_properties("kek", params.try_into().expect("p"), Some(o))
        .await
        .expect("update")
        .into_model()
        .expect("m");
    assert_eq!(updated.attributes.and_then(|a| a.enabled), Some(false));

    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("disabled");
    assert_eq!(
        error_parts(e),
        (403, Some("Forbidden".into()), Some("KeyDisabled".into()))
    );
    let e = client
        .wrap_key("kek", oaep256(DEK.to_vec()).try_into().expect("p"), None)
        .await
        .expect_err("wrap disabled");
    assert_eq!(
        error_parts(e),
        (403, Some("Forbidden".into()), Some("KeyDisabled".into()))
    );

    // Re-enable through the Rust control: works again.
    emu.enable_version("kek", &v1).expect("enable");
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped).await.expect("unwrap"),
        DEK
    );
    // Disable the whole key through the control.
    emu.disable_key("kek").expect("disable");
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("disabled key");
    assert_eq!(error_parts(e).2.as_deref(), Some("KeyDisabled"));
}

#[tokio::test]
async fn delete_gives_404_and_recover_restores() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await;

    let deleted = client
        .delete_key("kek", None)
        .await
        .expect("delete")
        .into_model()
        .expect("m");
    assert!(deleted.recovery_id.is_some());
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("deleted");
    assert_eq!(error_parts(e), (404, Some("KeyNotFound".into()), None));
    let e = client.get_key("kek", None).await.expect_err("get deleted");
    assert_eq!(e.http_status().map(u16::from), Some(404));

    client
        .get_deleted_key("kek", None)
        .await
        .expect("get deleted key");
    client
        .recover_deleted_key("kek", None)
        .await
        .expect("recover");
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("unwrap after recover"),
        DEK
    );

    // Rust-side delete too.
    emu.delete_key("kek").expect("delete");
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("deleted");
    assert_eq!(error_parts(e).0, 404);
    let e = unwrap(&client, "nokey", &v1, &wrapped)
        .await
        .expect_err("unknown");
    assert_eq!(error_parts(e), (404, Some("KeyNotFound".into()), None));
}

#[tokio::test]
async fn deny_all_gives_access_denied() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await;
    emu.deny_all();
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("denied");
    assert_eq!(
        error_parts(e),
        (403, Some("Forbidden".into()), Some("AccessDenied".into()))
    );
    emu.restore_access();
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("restored"),
        DEK
    );
}

#[tokio::test]
async fn expired_key_wraps_403_but_unwraps() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await;

    // exp in the past through the SDK's PATCH.
    let past = azure_core::time::OffsetDateTime::now_utc() - azure_core::time::Duration::hours(1);
    let params = UpdateKeyPropertiesParameters {
        key_attributes: Some(KeyAttributes {
            expires: Some(past),
            ..Default::default()
        }),
        ..Default::default()
    };
    let k = client
        .update_key_properties("kek", params.try_into().expect("p"), None)
        .await
        .expect("update")
        .into_model()
        .expect("m");
    assert!(k.attributes.and_then(|a| a.expires).is_some());

    let e = client
        .wrap_key("kek", oaep256(DEK.to_vec()).try_into().expect("p"), None)
        .await
        .expect_err("expired wrap");
    let (status, code, inner) = error_parts(e);
    assert_eq!(
        (status, code.as_deref(), inner.as_deref()),
        (403, Some("Forbidden"), Some("KeyExpired"))
    );
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("unwrap expired"),
        DEK
    );

    // nbf in the future via the Rust control: same behaviour.
    emu.set_exp("kek", "", None).expect("clear exp");
    emu.set_nbf("kek", "", Some(i64::MAX / 2)).expect("nbf");
    let e = client
        .wrap_key("kek", oaep256(DEK.to_vec()).try_into().expect("p"), None)
        .await
        .expect_err("nbf wrap");
    assert_eq!(error_parts(e).2.as_deref(), Some("KeyNotYetValid"));
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("unwrap nbf"),
        DEK
    );
}

#[tokio::test]
async fn injected_failures() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await;

    emu.inject_failure(Fault::ServiceUnavailable, Some(1));
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("503");
    assert_eq!(error_parts(e).0, 503);
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("next ok"),
        DEK
    );

    emu.inject_failure_for(
        "unwrapkey",
        Fault::Throttled {
            retry_after_secs: 3,
        },
        None,
    );
    client.get_key("kek", None).await.expect("get not affected");
    for _ in 0..2 {
        let e = unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect_err("429");
        assert_eq!(error_parts(e).0, 429);
    }
    emu.clear_failures();

    emu.inject_failure(Fault::CloseConnection, Some(1));
    let e = unwrap(&client, "kek", &v1, &wrapped)
        .await
        .expect_err("closed");
    assert_eq!(e.http_status(), None, "transport error, no status: {e}");
    assert_eq!(
        unwrap(&client, "kek", &v1, &wrapped)
            .await
            .expect("after close"),
        DEK
    );

    emu.set_latency_ms(150);
    let t = std::time::Instant::now();
    unwrap(&client, "kek", &v1, &wrapped).await.expect("slow");
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn counters_and_log() {
    let emu = Emulator::start();
    let client = key_client(&emu.url(), &emu.ca_pem(), "token");
    emu.create_rsa_key("kek");
    let (v1, wrapped) = wrap(&client, "kek").await; // 401 challenge + wrap
    emu.reset_counters();
    for _ in 0..3 {
        unwrap(&client, "kek", &v1, &wrapped).await.expect("unwrap");
    }
    client.get_key("kek", None).await.expect("get");
    wrap(&client, "kek").await;
    assert_eq!(emu.count("unwrapkey"), 3);
    assert_eq!(emu.count("wrapkey"), 1);
    assert_eq!(emu.count("get"), 1);
    assert_eq!(emu.count("unauthorized"), 0, "token cached by the client");
    assert_eq!(emu.total(), 5);
    let log = emu.request_log();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].op, "unwrapkey");
    assert_eq!(log[0].version.as_deref(), Some(v1.as_str()));
    assert_eq!(log[0].status, 200);
    assert_eq!(log[4].op, "wrapkey");
    assert_eq!(
        log[4].version.as_deref(),
        Some(v1.as_str()),
        "latest resolved for the empty version segment"
    );
    emu.reset_counters();
    assert_eq!((emu.total(), emu.request_log().len()), (0, 0));
}

#[tokio::test]
async fn token_allow_list_answers_401() {
    let emu = Emulator::start();
    emu.create_rsa_key("kek");
    emu.set_allowed_tokens(Some(vec!["good".into()]));
    let bad = key_client(&emu.url(), &emu.ca_pem(), "bad");
    let e = bad.get_key("kek", None).await.expect_err("401");
    assert_eq!(error_parts(e).0, 401);
    let good = key_client(&emu.url(), &emu.ca_pem(), "good");
    good.get_key("kek", None).await.expect("allowed token");
    emu.set_allowed_tokens(None);
    bad.get_key("kek", None).await.expect("any token again");
}

#[tokio::test]
async fn untrusted_ca_fails() {
    let emu = Emulator::start();
    let other = Emulator::start();
    emu.create_rsa_key("kek");
    let client = key_client(&emu.url(), &other.ca_pem(), "token");
    let e = client
        .get_key("kek", None)
        .await
        .expect_err("unknown issuer");
    assert_eq!(e.http_status(), None);
}

#[tokio::test]
async fn vault_localhost_name_with_challenge_verification_on() {
    use azure_core::http::{ClientOptions, RetryOptions, Transport};
    use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
    use std::sync::Arc;

    let emu = Emulator::start();
    emu.create_rsa_key("kek");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("pem"))
        .resolve("kvtest.vault.localhost", emu.addr())
        .build()
        .expect("client");
    let options = KeyClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::none(),
            ..Default::default()
        },
        verify_challenge_resource: Some(true),
        ..Default::default()
    };
    let url = format!("https://kvtest.vault.localhost:{}/", emu.port());
    let client = KeyClient::new(
        &url,
        Arc::new(common::StaticToken("t".into())),
        Some(options),
    )
    .expect("client");
    let (v, wrapped) = wrap(&client, "kek").await;
    assert_eq!(
        unwrap(&client, "kek", &v, &wrapped).await.expect("unwrap"),
        DEK
    );
    let k = client
        .get_key("kek", None)
        .await
        .expect("get")
        .into_model()
        .expect("m");
    assert!(
        k.key
            .and_then(|j| j.kid)
            .expect("kid")
            .starts_with(&format!("{url}keys/kek/"))
    );
}
