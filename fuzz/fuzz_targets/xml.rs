//! The XML safety check (DOCTYPE, entities, depth, shape limits, well-formedness).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ozg_gateway::config::Limits;
use ozg_gateway::core::intake::pool::Budget;
use ozg_gateway::core::intake::validate::{check_json, check_xml, DataLimits};

fuzz_target!(|data: &[u8]| {
    let limits = DataLimits::of(&Limits::default());
    let _ = check_xml(data, &limits, &Budget::unlimited());
    let _ = check_json(data, &limits, "data");
});
