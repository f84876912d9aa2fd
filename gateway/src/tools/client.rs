//! `ozg-gateway submit`: a small portal-side client (and the library the tests
//! and the load generator use to talk to the ingest API like a portal does).

use std::path::{Path, PathBuf};

/// Media type by file extension, for the client's convenience.
pub fn guess_media_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("txt") => "text/plain",
        Some("odt") => "application/vnd.oasis.opendocument.text",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

/// A portal identity: client certificate, key and the CA of the gateway's server certificate.
#[derive(Debug, Clone)]
pub struct PortalIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// An HTTPS client presenting the portal's certificate.
pub fn http_client(id: &PortalIdentity) -> Result<reqwest::Client, String> {
    let tls = crate::listen::tls::client_config(&id.cert, &id.key, &id.ca)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// What to submit.
#[derive(Debug, Clone, Default)]
pub struct SubmitRequest {
    pub leistung: String,
    pub destination: String,
    pub reference: Option<String>,
    pub data: Vec<u8>,
    pub data_media_type: String,
    /// (file name, media type, content)
    pub attachments: Vec<(String, String, Vec<u8>)>,
    pub idempotency_key: Option<String>,
}

/// Status and body of the gateway's answer.
#[derive(Debug, Clone)]
pub struct SubmitAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Sends a submission as `multipart/form-data`.
pub async fn submit(
    client: &reqwest::Client,
    base_url: &str,
    req: &SubmitRequest,
) -> Result<SubmitAnswer, reqwest::Error> {
    let mut metadata =
        serde_json::json!({ "leistung": req.leistung, "destination": req.destination });
    if let Some(r) = &req.reference {
        metadata["reference"] = r.clone().into();
    }
    let url = format!("{}/v1/submissions", base_url.trim_end_matches('/'));
    post_form(client, &url, metadata, req).await
}

/// Sends a target's reply (`reply_type`, e.g. `bescheid`) to submission
/// `submission_id`; `req`'s Leistung and destination are not sent (a reply
/// has the submission's).
pub async fn reply(
    client: &reqwest::Client,
    base_url: &str,
    submission_id: &str,
    reply_type: &str,
    req: &SubmitRequest,
) -> Result<SubmitAnswer, reqwest::Error> {
    let mut metadata = serde_json::json!({ "reply_type": reply_type });
    if let Some(r) = &req.reference {
        metadata["reference"] = r.clone().into();
    }
    let url = format!(
        "{}/v1/submissions/{submission_id}/replies",
        base_url.trim_end_matches('/')
    );
    post_form(client, &url, metadata, req).await
}

/// Posts `metadata`, the data and the attachments of `req` as `multipart/form-data`.
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    metadata: serde_json::Value,
    req: &SubmitRequest,
) -> Result<SubmitAnswer, reqwest::Error> {
    use reqwest::multipart::{Form, Part};
    let mut form = Form::new()
        .part(
            "metadata",
            Part::bytes(serde_json::to_vec(&metadata).unwrap_or_default())
                .mime_str("application/json")?,
        )
        .part(
            "data",
            Part::bytes(req.data.clone()).mime_str(&req.data_media_type)?,
        );
    for (name, mt, content) in &req.attachments {
        form = form.part(
            "attachment",
            Part::bytes(content.clone())
                .file_name(name.clone())
                .mime_str(mt)?,
        );
    }
    let mut builder = client.post(url).multipart(form);
    if let Some(k) = &req.idempotency_key {
        builder = builder.header("Idempotency-Key", k);
    }
    let resp = builder.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
    Ok(SubmitAnswer { status, body })
}

/// Reads a status document.
pub async fn status(client: &reqwest::Client, url: &str) -> Result<SubmitAnswer, reqwest::Error> {
    let resp = client.get(url).send().await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok(SubmitAnswer { status, body })
}
