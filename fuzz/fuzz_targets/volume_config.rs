//! `VolumeConfig::parse` on arbitrary bytes: never panics; a parsed config has a valid block
//! size and survives `to_json` -> `parse`.
#![no_main]
use cmkfs::format::VolumeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = VolumeConfig::parse(data) {
        assert!(c.block_size.is_power_of_two() && (512..=1 << 20).contains(&c.block_size));
        assert_eq!(1u64 << c.block_shift(), c.block_size as u64);
        assert_eq!(VolumeConfig::parse(&c.to_json()).expect("re-parses"), c);
    }
});
