//! The mount's crypto-module check: the fips build enters FIPS mode (self-tests included) and
//! a mount refuses, with one line, if that fails or if `fips = "required"` meets a build
//! without the validated module.

use crate::config::FipsPolicy;
use crate::crypto::{FIPS_BUILD, FipsError, ModuleInfo, enter_fips_mode, module_info};

/// The module this mount runs on, or why it must not mount.
pub fn check_crypto_module(policy: FipsPolicy) -> Result<ModuleInfo, String> {
    let refuse = |e: FipsError| format!("refusing to mount: {e}");
    let info = if FIPS_BUILD || policy == FipsPolicy::Required {
        enter_fips_mode().map_err(refuse)?
    } else {
        module_info()
    };
    tracing::debug!(module = %info.summary(), "crypto module");
    Ok(info)
}

/// A FIPS-mode mount of a volume whose names use AES-256-GCM-SIV (format 1): that mode is not
/// NIST-approved, so say so once; the volume keeps working (docs/compliance.md, how to move).
pub fn warn_on_legacy_names(name_cipher: &str) {
    let approved = crate::crypto::NameScheme::parse(name_cipher)
        .map(|n| n.fips_approved())
        .unwrap_or(false);
    if FIPS_BUILD && !approved {
        tracing::warn!(
            name_cipher,
            "this volume's names use {name_cipher}, not a NIST-approved mode; contents, keys and TLS stay on approved algorithms. Copy the tree to a volume made by `cmkfs init --fips` to move (docs/compliance.md)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_needs_the_fips_build() {
        let r = check_crypto_module(FipsPolicy::Required);
        if FIPS_BUILD {
            assert!(r.unwrap().fips_mode);
        } else {
            let e = r.unwrap_err();
            assert!(
                e.starts_with("refusing to mount:") && !e.contains('\n'),
                "{e}"
            );
        }
        let auto = check_crypto_module(FipsPolicy::Auto).unwrap();
        assert_eq!(auto.fips_mode, FIPS_BUILD);
    }
}
