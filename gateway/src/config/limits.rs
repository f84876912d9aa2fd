//! `[ingest.limits]`: what one request may cost the gateway — sizes, counts,
//! times, and the shape of its data.

use std::time::Duration;

use serde::Deserialize;

use super::ByteSize;

/// Limits that keep one request from exhausting the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body.
    pub max_body: ByteSize,
    /// Largest single part (data or attachment).
    pub max_part: ByteSize,
    /// Largest `metadata` part.
    pub max_metadata: ByteSize,
    /// Most parts per request (metadata + data + attachments).
    pub max_parts: usize,
    /// Largest request head (request line and headers).
    pub max_header: ByteSize,
    /// Time a client has to send the request head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time for the whole request — sending it, checking its data (waiting for a
    /// validation slot included) and storing it; then it is answered `408`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most connections from one client address at once (TLS handshakes
    /// included); further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Most connections of one registered portal or operator at once; further ones
    /// get `429 too-many-connections` and are closed.
    pub max_connections_per_client: usize,
    /// Submissions a second each portal may send (bursts up to one second's
    /// worth); beyond it `429 portal-rate-limited` with `Retry-After`. None: no
    /// rate limit. A portal's own `rate` replaces it.
    pub portal_rate: Option<f64>,
    /// Submissions each portal may have in progress at once (uploading, being
    /// checked or stored); beyond it `429 portal-too-many-uploads`. A portal's own
    /// `uploads` replaces it.
    pub portal_uploads: usize,
    /// A connection whose client does not read an answer for this long is closed.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Time for the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Deepest XML element nesting in the data part.
    pub max_xml_depth: usize,
    /// Most attributes on one XML element (namespace declarations included).
    pub max_xml_attributes: usize,
    /// Most XML elements in the data part.
    pub max_xml_elements: usize,
    /// Longest XML attribute value, and longest text of an element between two tags.
    pub max_xml_value: ByteSize,
    /// Deepest JSON nesting in the data and metadata parts.
    pub max_json_depth: usize,
    /// Most JSON values (array elements and object members, nested ones included)
    /// in the data and metadata parts.
    pub max_json_values: usize,
    /// Most data checks (XML safety, XML Schema, JSON parsing and JSON Schema of
    /// data parts over 16 KiB) running at once, each on a thread of its own;
    /// further submissions wait for a slot within `request_timeout`. Default: the
    /// number of CPU cores.
    pub validation_concurrency: Option<usize>,
    /// Longest time one data check may run once it has its slot; it is then
    /// stopped and the data refused (`422 data-too-complex`).
    #[serde(with = "humantime_serde")]
    pub validation_timeout: Duration,
    /// Most open connections; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// What all request bodies together may hold in memory at once; a request
    /// that would exceed it gets `503` with `Retry-After` (at least `max_body`).
    pub memory_budget: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: ByteSize(64 << 20),
            max_part: ByteSize(32 << 20),
            max_metadata: ByteSize(64 << 10),
            max_parts: 32,
            max_header: ByteSize(16 << 10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            max_xml_depth: 256,
            max_xml_attributes: 256,
            max_xml_elements: 200_000,
            max_xml_value: ByteSize(8 << 20),
            max_json_depth: 64,
            max_json_values: 200_000,
            validation_concurrency: None,
            validation_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 256,
            max_connections_per_client: 512,
            portal_rate: None,
            portal_uploads: 128,
            write_timeout: Duration::from_secs(30),
            memory_budget: ByteSize(256 << 20),
        }
    }
}

impl Limits {
    /// Data checks at once: `validation_concurrency`, or one per CPU core.
    pub fn validation_slots(&self) -> usize {
        self.validation_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}
