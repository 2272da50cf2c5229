//! Self-checking metadata copies (format 2): one header line naming the record, its
//! generation, the volume id and a SHA-256 checksum, then the record's JSON bytes.
//!
//! ```text
//! cmkfs-meta 2 RECORD GENERATION VOLUME_ID CHECKSUM\n
//! CONTENT
//! ```
//!
//! `CHECKSUM` is lowercase hex of SHA-256("cmkfs-meta\0" || version || RECORD || "\0" ||
//! GENERATION u64 LE || VOLUME_ID || "\0" || CONTENT). Every byte of the copy is covered:
//! the header is parsed strictly and must re-encode to the same bytes. The checksum detects
//! damage, not tampering (anyone can recompute it); tampering with wrapped keys is caught by
//! the key wraps themselves. Pure encode/decode, no I/O.

use super::FormatError;

/// Version of the sealed-copy layout (the `2` in the header line).
pub const SEALED_VERSION: u8 = 2;
const MAGIC: &str = "cmkfs-meta";

/// A decoded, verified copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedCopy {
    pub record: String,
    pub generation: u64,
    pub volume_id: String,
    pub content: Vec<u8>,
}

fn checksum(record: &str, generation: u64, volume_id: &str, content: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(MAGIC.as_bytes());
    ctx.update(&[0, SEALED_VERSION]);
    ctx.update(record.as_bytes());
    ctx.update(&[0]);
    ctx.update(&generation.to_le_bytes());
    ctx.update(volume_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(content);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header(record: &str, generation: u64, volume_id: &str, sum: &str) -> String {
    format!("{MAGIC} {SEALED_VERSION} {record} {generation} {volume_id} {sum}\n")
}

/// Whether `bytes` look like a sealed copy at all (as opposed to a version-1 plain record).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC.as_bytes())
}

impl SealedCopy {
    pub fn encode(&self) -> Vec<u8> {
        let sum = checksum(
            &self.record,
            self.generation,
            &self.volume_id,
            &self.content,
        );
        let mut v = header(&self.record, self.generation, &self.volume_id, &sum).into_bytes();
        v.extend_from_slice(&self.content);
        v
    }

    /// Decodes and verifies a copy of `record`. Errors name what is wrong: the header line
    /// or the checksum.
    pub fn decode(bytes: &[u8], record: &str) -> Result<Self, FormatError> {
        let nl = bytes
            .iter()
            .take(256)
            .position(|b| *b == b'\n')
            .ok_or(FormatError::Field("header line"))?;
        let line =
            std::str::from_utf8(&bytes[..nl]).map_err(|_| FormatError::Field("header line"))?;
        let parts: Vec<&str> = line.split(' ').collect();
        let [magic, version, rec, generation, volume_id, sum] = parts[..] else {
            return Err(FormatError::Field("header line"));
        };
        if magic != MAGIC {
            return Err(FormatError::Magic);
        }
        if version != SEALED_VERSION.to_string() {
            return Err(FormatError::Version(version.parse().unwrap_or(0)));
        }
        if rec != record {
            return Err(FormatError::Field("record name"));
        }
        let generation: u64 = generation
            .parse()
            .map_err(|_| FormatError::Field("generation"))?;
        let content = &bytes[nl + 1..];
        // Strict: the header must be exactly what encoding these values gives.
        if header(rec, generation, volume_id, sum).as_bytes() != &bytes[..=nl] {
            return Err(FormatError::Field("header line"));
        }
        if checksum(rec, generation, volume_id, content) != sum {
            return Err(FormatError::Field("checksum"));
        }
        Ok(SealedCopy {
            record: rec.to_string(),
            generation,
            volume_id: volume_id.to_string(),
            content: content.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy() -> SealedCopy {
        SealedCopy {
            record: "keystore".into(),
            generation: 7,
            volume_id: "0123456789abcdef0123456789abcdef".into(),
            content: b"{\"format\": 2}\n".to_vec(),
        }
    }

    #[test]
    fn round_trip() {
        let c = copy();
        assert_eq!(SealedCopy::decode(&c.encode(), "keystore").unwrap(), c);
        assert!(is_sealed(&c.encode()));
        assert!(!is_sealed(b"{}"));
        assert_eq!(
            SealedCopy::decode(&c.encode(), "volume"),
            Err(FormatError::Field("record name"))
        );
    }

    #[test]
    fn every_byte_flip_and_truncation_is_detected() {
        let bytes = copy().encode();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x20, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                assert!(
                    SealedCopy::decode(&b, "keystore").is_err(),
                    "flip {mask:#x} at {i} not detected"
                );
            }
        }
        for n in 0..bytes.len() {
            assert!(SealedCopy::decode(&bytes[..n], "keystore").is_err());
        }
    }
}
