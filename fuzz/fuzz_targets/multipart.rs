//! The multipart body and metadata parser of the ingest API, then the data checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ozg_gateway::config::Limits;
use ozg_gateway::core::intake::pool::Budget;
use ozg_gateway::core::intake::validate::{check_json, check_xml, DataLimits};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let body = bytes::Bytes::copy_from_slice(data);
    let limits = Limits::default();
    let form = rt.block_on(ozg_gateway::listen::portal::read_form(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) }),
        "B0undary".to_owned(),
        &limits,
        |md| ozg_gateway::core::intake::Metadata::parse(md, &DataLimits::of(&limits)),
    ));
    if let Ok(form) = form {
        let shape = DataLimits::of(&limits);
        let _ = check_xml(&form.data.data, &shape, &Budget::unlimited());
        let _ = check_json(&form.data.data, &shape, "data");
    }
});
