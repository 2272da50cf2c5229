//! `DirIdFile::decode` on arbitrary bytes: never panics; what decodes re-encodes exactly
//! (version 2 with `encode`, version 1 with `encode_v1`).
#![no_main]
use cmkfs::format::DirIdFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((d, v1)) = DirIdFile::decode_versioned(data) {
        if v1 {
            assert_eq!(&d.encode_v1()[..], data);
        } else {
            assert_eq!(&d.encode()[..], data);
        }
    }
});
