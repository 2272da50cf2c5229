//! Encrypted symlink targets. The backing symlink's target is unpadded base64url of
//! `version (1) || scope (4 LE) || epoch (4 LE) || link id (16) || nonce (12) || ct || tag (16)`,
//! sealed with a key derived from the data key and the link id, AAD `"CMKL" || link id`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{NONCE_LEN, TAG_LEN, random_id};
use crate::format::{DataKeyRef, FORMAT_VERSION};
use crate::keys::KeyHierarchy;

use super::{Result, VolumeError, errno};

const PREFIX_LEN: usize = 1 + 4 + 4 + 16;
const OVERHEAD: usize = PREFIX_LEN + NONCE_LEN + TAG_LEN;
/// Longest plaintext target that still fits a backing target of 4095 bytes.
pub const MAX_TARGET: usize = 4095 / 4 * 3 - OVERHEAD;

/// Plaintext length of a target whose backing target is `len` bytes.
pub fn plaintext_len(len: u64) -> u64 {
    (len * 3 / 4).saturating_sub(OVERHEAD as u64)
}

fn aad(link_id: &[u8; 16]) -> [u8; 20] {
    let mut a = [0u8; 20];
    a[..4].copy_from_slice(b"CMKL");
    a[4..].copy_from_slice(link_id);
    a
}

pub fn encrypt_target(keys: &KeyHierarchy, key: DataKeyRef, target: &[u8]) -> Result<String> {
    if target.len() > MAX_TARGET {
        return Err(errno(libc::ENAMETOOLONG));
    }
    let link_id = random_id()?;
    let dk = keys.data_key(key)?;
    let mut buf = vec![0u8; PREFIX_LEN + NONCE_LEN + target.len() + TAG_LEN];
    buf[0] = FORMAT_VERSION;
    buf[1..5].copy_from_slice(&key.scope.to_le_bytes());
    buf[5..9].copy_from_slice(&key.epoch.to_le_bytes());
    buf[9..25].copy_from_slice(&link_id);
    buf[PREFIX_LEN + NONCE_LEN..PREFIX_LEN + NONCE_LEN + target.len()].copy_from_slice(target);
    dk.symlink_cipher(&link_id)?
        .seal(&aad(&link_id), &mut buf[PREFIX_LEN..])?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

pub fn decrypt_target(keys: &KeyHierarchy, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = |why: &str| VolumeError::Integrity(format!("symlink target {why}"));
    let mut buf = URL_SAFE_NO_PAD
        .decode(stored)
        .map_err(|_| bad("is not base64"))?;
    if buf.len() < OVERHEAD {
        return Err(bad("is too short"));
    }
    if buf[0] != FORMAT_VERSION {
        return Err(bad("has an unknown version"));
    }
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let key = DataKeyRef {
        scope: le(&buf[1..5]),
        epoch: le(&buf[5..9]),
    };
    let mut link_id = [0u8; 16];
    link_id.copy_from_slice(&buf[9..25]);
    let dk = keys.data_key(key)?;
    let plain = dk
        .symlink_cipher(&link_id)?
        .open(&aad(&link_id), &mut buf[PREFIX_LEN..])
        .map_err(|_| bad("failed authentication"))?;
    Ok(plain.to_vec())
}

/// The data key a stored target was sealed with, if it parses.
pub fn target_key(stored: &[u8]) -> Option<DataKeyRef> {
    let buf = URL_SAFE_NO_PAD.decode(stored).ok()?;
    if buf.len() < OVERHEAD || buf[0] != FORMAT_VERSION {
        return None;
    }
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Some(DataKeyRef {
        scope: le(&buf[1..5]),
        epoch: le(&buf[5..9]),
    })
}
