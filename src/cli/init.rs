//! `cmkfs init`: create a volume and report where its service key went.

use crate::volume::{InitOptions, init_volume};

use super::InitArgs;

pub fn run(a: InitArgs) -> Result<(), String> {
    // The fips build creates keys only in FIPS mode, self-tests passed (as mount does).
    if crate::crypto::FIPS_BUILD {
        crate::crypto::enter_fips_mode()
            .map_err(|e| format!("refusing to create a volume: {e}"))?;
    }
    let cmk = match &a.cmk {
        Some(url) => {
            Some(a.key_vault.connect(url)? as std::sync::Arc<dyn crate::keys::CustomerKey>)
        }
        None => None,
    };
    let opts = InitOptions {
        service_key: a.service_key,
        block_size: a.block_size,
        cmk,
        audit_log: a.audit_log,
        name_scheme: if a.fips {
            crate::crypto::NameScheme::HmacSivCtr
        } else {
            crate::crypto::NameScheme::build_default()
        },
        shared: a.shared,
    };
    let report = init_volume(&a.backing, &opts).map_err(|e| e.to_string())?;
    if a.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "Created cmkfs volume {} in {}",
            report.volume_id,
            a.backing.display()
        );
        println!(
            "Service key: {} (fingerprint {})",
            report.service_key.display(),
            report.service_key_fingerprint
        );
        println!("Name encryption: {}", report.name_cipher);
        if a.shared {
            println!(
                "Shared mode: several hosts may mount it at once (see docs/shared.md for the backing filesystem's mount options)"
            );
        }
        if let Some(cmk) = &report.cmk {
            println!(
                "Customer-managed key: {cmk} (data keys are wrapped by the service key, then by this key)"
            );
        }
        println!(
            "Keep the service key outside the backing directory and back it up: without it the data cannot be read."
        );
        println!(
            "Back up the key store too: cmkfs key backup {} --out {}.cmkfs-keys",
            a.backing.display(),
            report.volume_id
        );
    }
    Ok(())
}
