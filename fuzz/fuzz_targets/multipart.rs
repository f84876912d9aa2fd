//! The multipart body and metadata parser of the ingest API, then the data checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ozg_gateway::config::Limits;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let body = bytes::Bytes::copy_from_slice(data);
    let limits = Limits::default();
    let form = rt.block_on(ozg_gateway::listen::portal::read_form(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) }),
        "B0undary".to_owned(),
        &limits,
        |_| Ok(()),
    ));
    if let Ok(form) = form {
        let _ = ozg_gateway::core::intake::validate::check_xml(&form.data.data, limits.max_xml_depth);
        let _ = ozg_gateway::core::intake::validate::check_json(&form.data.data, limits.max_json_depth, "data");
    }
});
