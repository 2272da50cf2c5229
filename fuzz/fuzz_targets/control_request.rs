//! Control-socket requests: `serde_json::from_slice::<cmkfs::control::Request>` on arbitrary
//! bytes (a local client's request line): never panics; what parses round-trips.
#![no_main]
use cmkfs::control::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Request>(data) {
        let s = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<Request>(&s).unwrap(), r);
    }
    // the client parses the daemon's response lines too
    let _ = serde_json::from_slice::<Response>(data);
});
