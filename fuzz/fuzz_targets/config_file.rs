//! `ConfigFile::parse` (the daemon's TOML config) on arbitrary text: never panics; errors
//! name the file.
#![no_main]
use std::path::Path;

use cmkfs::config::ConfigFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/etc/cmkfs/fuzz.toml");
    if let Err(msg) = ConfigFile::parse(text, path) {
        assert!(msg.contains("/etc/cmkfs/fuzz.toml"), "error does not name the file: {msg}");
    }
});
