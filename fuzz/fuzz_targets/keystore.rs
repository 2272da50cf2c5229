//! `KeyStore::parse` on arbitrary bytes: never panics; a parsed store survives
//! `to_json` -> `parse` unchanged and has no duplicate (scope, epoch).
#![no_main]
use cmkfs::format::KeyStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = KeyStore::parse(data) {
        let again = KeyStore::parse(&s.to_json()).expect("a parsed key store re-parses");
        assert_eq!(again, s);
        if let Some(cur) = s.current(0) {
            assert!(s.find(cur).is_some());
        }
    }
});
