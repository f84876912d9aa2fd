//! The XML safety check (DOCTYPE, entities, depth, well-formedness).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ozg_gateway::core::intake::validate::check_xml(data, 256);
    let _ = ozg_gateway::core::intake::validate::check_json(data, 64, "data");
});
