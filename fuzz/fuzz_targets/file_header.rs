//! `FileHeader::decode` on arbitrary bytes: never panics; what decodes re-encodes to the
//! same 32 bytes.
#![no_main]
use cmkfs::format::{FileHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FileHeader::decode(data) {
        assert!(data.len() >= HEADER_LEN);
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN]);
    }
});
