//! `DirIdFile::decode` on arbitrary bytes: never panics; what decodes re-encodes exactly.
#![no_main]
use cmkfs::format::{DIRID_LEN, DirIdFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = DirIdFile::decode(data) {
        assert!(data.len() >= DIRID_LEN);
        assert_eq!(&d.encode()[..], &data[..DIRID_LEN]);
    }
});
