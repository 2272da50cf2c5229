//! Test PKI and the rustls server configuration.
//!
//! At start the emulator makes a fresh CA (CA:TRUE) and a leaf certificate (CA:FALSE) signed by
//! it with SANs `IP:127.0.0.1`, `DNS:localhost`, `DNS:*.vault.localhost` and
//! `DNS:kvtest.vault.localhost`. Clients trust the CA PEM ([`TestPki::ca_pem`]).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The generated CA and leaf.
pub struct TestPki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Leaf certificate, DER.
    pub leaf_der: CertificateDer<'static>,
    /// Leaf private key, PKCS#8 DER.
    pub leaf_key_der: Vec<u8>,
}

/// Errors while generating the PKI or TLS config.
#[derive(Debug)]
pub struct TlsSetupError(pub String);

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS setup failed: {}", self.0)
    }
}

impl std::error::Error for TlsSetupError {}

fn err(e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError(e.to_string())
}

impl TestPki {
    /// Generates a CA and a leaf for the given extra DNS names (besides the defaults).
    pub fn generate(extra_dns: &[String]) -> Result<TestPki, TlsSetupError> {
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kv-emulator test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names: Vec<String> = [
            "127.0.0.1",
            "localhost",
            "*.vault.localhost",
            "kvtest.vault.localhost",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        names.extend(extra_dns.iter().cloned());
        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf_params = CertificateParams::new(names).map_err(err)?;
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "kv-emulator");
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            leaf_der: leaf.der().clone(),
            leaf_key_der: leaf_key.serialize_der(),
        })
    }

    /// A rustls server config (aws-lc-rs provider, HTTP/1.1 ALPN).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf_der.clone()], key)
            .map_err(err)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}
