//! The XTA listener's SOAP 1.2 envelope reader on arbitrary bytes: it must
//! never panic, and a body element it reports lies within the request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ozg_gateway::listen::xta::soap::read(data) {
        assert!(!req.action.is_empty());
        if let Some(body) = req.body {
            assert!(body.span.start < body.span.end && body.span.end <= data.len());
        }
    }
});
