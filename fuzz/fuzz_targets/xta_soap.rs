//! The XTA listener's request reading on arbitrary bytes: the SOAP 1.2
//! envelope reader and the element tree the operations read their header
//! blocks and body from. Neither may panic; a body element the reader reports
//! lies within the request; a request id read back is one the gateway writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozg_gateway::listen::xta::{reply, soap, tree};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = soap::read(data) {
        assert!(!req.action.is_empty());
        if let Some(body) = &req.body {
            assert!(body.span.start < body.span.end && body.span.end <= data.len());
        }
        if let Ok(doc) = tree::parse(data) {
            assert_eq!(doc.name, "Envelope");
            let body = doc.child("Body").and_then(|b| b.children.first());
            for id in body.and_then(|b| b.attr("MsgBoxRequestID")) {
                if let Some(cursor) = reply::Cursor::parse(id) {
                    assert_eq!(reply::Cursor::parse(&cursor.request_id()), Some(cursor));
                }
            }
        }
    }
});
