//! The hole map record of a sparse file (format 2): which blocks of a file are holes, as a
//! sorted list of block ranges, sealed with the file's content key. Pure encode/decode: the
//! volume core decides where the record lives and when it is written.
//!
//! ```text
//! record = magic "CMKH" (4) || version (1) || reserved (3, zero) || nonce (12)
//!          || AES-256-GCM(content key, aad, plaintext) || tag (16)
//! aad    = "CMKH" || version (1) || file id (16) || DK scope (u32) || DK epoch (u32)
//! plaintext = count (u64) || count × (first block (u64), block count (u64))
//! ```
//!
//! Ranges are sorted, non-empty, non-overlapping and not adjacent (adjacent ranges are merged);
//! anything else is rejected, so one map has one encoding.

use std::collections::BTreeMap;

use super::{DataKeyRef, FormatError};

pub const HOLES_MAGIC: &[u8; 4] = b"CMKH";
/// Version byte of the hole map record.
pub const HOLES_VERSION: u8 = 1;
/// Bytes before the sealed part (magic, version, reserved).
pub const HOLES_PREFIX_LEN: usize = 8;
const EXTENT_LEN: usize = 16;
/// Upper bound on ranges in one map (a 16 MiB record), so a damaged count cannot make a
/// reader allocate without bound.
pub const MAX_HOLE_RANGES: u64 = 1 << 20;

/// Associated data binding a hole map to its file and data key.
pub fn holes_aad(file_id: &[u8; 16], key: DataKeyRef) -> [u8; 29] {
    let mut a = [0u8; 29];
    a[..4].copy_from_slice(HOLES_MAGIC);
    a[4] = HOLES_VERSION;
    a[5..21].copy_from_slice(file_id);
    a[21..25].copy_from_slice(&key.scope.to_le_bytes());
    a[25..29].copy_from_slice(&key.epoch.to_le_bytes());
    a
}

/// The hole ranges of one file: block ranges `[first, end)`, keyed by `first`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoleList {
    ranges: BTreeMap<u64, u64>,
}

impl HoleList {
    pub fn new() -> Self {
        HoleList::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges `[first, end)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&a, &b)| (a, b))
    }

    /// Whether block `b` is a hole.
    pub fn contains(&self, b: u64) -> bool {
        self.ranges
            .range(..=b)
            .next_back()
            .is_some_and(|(_, &end)| b < end)
    }

    /// Marks blocks `[first, end)` as holes.
    pub fn insert(&mut self, first: u64, end: u64) {
        if first >= end {
            return;
        }
        let (mut a, mut b) = (first, end);
        // Merge with every range that overlaps or touches [a, b).
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=b)
            .rev()
            .take_while(|(_, e)| **e >= a)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            a = a.min(s);
            b = b.max(e);
        }
        self.ranges.insert(a, b);
    }

    /// Marks blocks `[first, end)` as data (no longer holes). Returns whether anything changed.
    pub fn remove(&mut self, first: u64, end: u64) -> bool {
        if first >= end {
            return false;
        }
        let hit: Vec<(u64, u64)> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, e)| **e > first)
            .map(|(&s, &e)| (s, e))
            .collect();
        for &(s, e) in &hit {
            self.ranges.remove(&s);
            if s < first {
                self.ranges.insert(s, first);
            }
            if e > end {
                self.ranges.insert(end, e);
            }
        }
        !hit.is_empty()
    }

    /// Drops every hole at or past block `end` (the file was cut to `end` blocks).
    pub fn cut(&mut self, end: u64) -> bool {
        self.remove(end, u64::MAX)
    }

    /// The first hole range that ends after block `b`: `(first, end)` with `end > b`.
    pub fn next_hole(&self, b: u64) -> Option<(u64, u64)> {
        if let Some((&s, &e)) = self.ranges.range(..=b).next_back()
            && e > b
        {
            return Some((s, e));
        }
        self.ranges.range(b..).next().map(|(&s, &e)| (s, e))
    }

    /// Encodes the plaintext part (count and ranges).
    pub fn encode_plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.ranges.len() * EXTENT_LEN);
        out.extend_from_slice(&(self.ranges.len() as u64).to_le_bytes());
        for (a, b) in self.iter() {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&(b - a).to_le_bytes());
        }
        out
    }

    /// Decodes the plaintext part, rejecting anything but the one canonical encoding.
    pub fn decode_plain(b: &[u8]) -> Result<Self, FormatError> {
        let u64_at = |i: usize| -> Result<u64, FormatError> {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(i..i + 8).ok_or(FormatError::Truncated(b.len()))?);
            Ok(u64::from_le_bytes(a))
        };
        let count = u64_at(0)?;
        if count > MAX_HOLE_RANGES {
            return Err(FormatError::Field("hole range count"));
        }
        if b.len() as u64 != 8 + count * EXTENT_LEN as u64 {
            return Err(FormatError::Field("hole map length"));
        }
        let mut list = HoleList::new();
        let mut prev_end: Option<u64> = None;
        for i in 0..count as usize {
            let first = u64_at(8 + i * EXTENT_LEN)?;
            let len = u64_at(16 + i * EXTENT_LEN)?;
            let end = first
                .checked_add(len)
                .ok_or(FormatError::Field("hole range"))?;
            if len == 0 || prev_end.is_some_and(|p| first <= p) {
                return Err(FormatError::Field("hole range order"));
            }
            list.ranges.insert(first, end);
            prev_end = Some(end);
        }
        Ok(list)
    }
}

/// The unsealed prefix of a hole map record.
pub fn holes_prefix() -> [u8; HOLES_PREFIX_LEN] {
    let mut p = [0u8; HOLES_PREFIX_LEN];
    p[..4].copy_from_slice(HOLES_MAGIC);
    p[4] = HOLES_VERSION;
    p
}

/// Checks the unsealed prefix of a hole map record.
pub fn check_holes_prefix(b: &[u8]) -> Result<(), FormatError> {
    if b.len() < HOLES_PREFIX_LEN {
        return Err(FormatError::Truncated(b.len()));
    }
    if &b[..4] != HOLES_MAGIC {
        return Err(FormatError::Magic);
    }
    if b[4] != HOLES_VERSION {
        return Err(FormatError::Version(b[4]));
    }
    if b[5..8] != [0, 0, 0] {
        return Err(FormatError::Field("reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(r: &[(u64, u64)]) -> HoleList {
        let mut l = HoleList::new();
        for &(a, b) in r {
            l.insert(a, b);
        }
        l
    }

    fn ranges(l: &HoleList) -> Vec<(u64, u64)> {
        l.iter().collect()
    }

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let l = list(&[(10, 20), (30, 40), (20, 25), (5, 11), (39, 50)]);
        assert_eq!(ranges(&l), vec![(5, 25), (30, 50)]);
        assert!(l.contains(5) && l.contains(24) && !l.contains(25) && !l.contains(29));
        assert!(l.contains(49) && !l.contains(50) && !l.contains(4));
    }

    #[test]
    fn remove_splits_and_cut_drops_the_tail() {
        let mut l = list(&[(0, 100)]);
        assert!(l.remove(10, 20));
        assert!(!l.remove(10, 20));
        assert_eq!(ranges(&l), vec![(0, 10), (20, 100)]);
        assert!(l.remove(5, 30));
        assert_eq!(ranges(&l), vec![(0, 5), (30, 100)]);
        assert!(l.cut(50));
        assert_eq!(ranges(&l), vec![(0, 5), (30, 50)]);
        assert!(l.cut(0));
        assert!(l.is_empty());
    }

    #[test]
    fn next_hole_finds_the_range_at_or_after() {
        let l = list(&[(5, 10), (20, 30)]);
        assert_eq!(l.next_hole(0), Some((5, 10)));
        assert_eq!(l.next_hole(7), Some((5, 10)));
        assert_eq!(l.next_hole(10), Some((20, 30)));
        assert_eq!(l.next_hole(30), None);
    }

    #[test]
    fn encoding_round_trips_and_is_canonical() {
        let l = list(&[(0, 1), (3, 1 << 40)]);
        let b = l.encode_plain();
        assert_eq!(HoleList::decode_plain(&b).unwrap(), l);
        assert_eq!(
            HoleList::decode_plain(&HoleList::new().encode_plain()).unwrap(),
            HoleList::new()
        );
        // Adjacent ranges are not canonical.
        let mut adj = 2u64.to_le_bytes().to_vec();
        for (a, n) in [(0u64, 2u64), (2, 2)] {
            adj.extend_from_slice(&a.to_le_bytes());
            adj.extend_from_slice(&n.to_le_bytes());
        }
        assert!(HoleList::decode_plain(&adj).is_err());
        assert!(HoleList::decode_plain(&b[..b.len() - 1]).is_err());
        let mut huge = b.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(HoleList::decode_plain(&huge).is_err());
        let mut zero_len = b;
        zero_len[16..24].copy_from_slice(&0u64.to_le_bytes());
        assert!(HoleList::decode_plain(&zero_len).is_err());
    }

    #[test]
    fn aad_binds_file_and_key() {
        let k = DataKeyRef { scope: 0, epoch: 1 };
        assert_ne!(holes_aad(&[1; 16], k), holes_aad(&[2; 16], k));
        assert_ne!(
            holes_aad(&[1; 16], k),
            holes_aad(&[1; 16], DataKeyRef { scope: 0, epoch: 2 })
        );
    }
}
