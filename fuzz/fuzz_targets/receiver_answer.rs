//! What a receiver answers, read by the gateway: the xdomea receipt parser
//! (`EmpfangBestaetigen.0202`) on arbitrary bytes. It must never panic, and a
//! recognised receipt always names a non-empty ProzessID.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(c) = ozg_adapter_sdk::xdomea::confirmation(data) {
        assert!(!c.process_id.is_empty());
    }
});
