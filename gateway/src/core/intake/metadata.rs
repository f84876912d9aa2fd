//! The parts of a submission as the core takes them: the `metadata` part
//! (routing fields and what the portal adds) and the data and attachment parts.

use bytes::Bytes;
use serde::Deserialize;

use crate::core::intake::validate;
use crate::core::refusal::Refusal;

/// The `metadata` part.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// FIM-Leistungsschlüssel.
    pub leistung: String,
    /// The responsible authority (routing key).
    pub destination: String,
    /// The portal's own reference (Aktenzeichen of the portal).
    #[serde(default)]
    pub reference: Option<String>,
    /// Payment information as the portal reports it.
    #[serde(default)]
    pub payment: Option<serde_json::Value>,
    /// Where the recipient may answer.
    #[serde(default)]
    pub reply_channel: Option<serde_json::Value>,
}

impl Metadata {
    /// Parses and checks the `metadata` part (JSON within the limits).
    pub fn parse(body: &[u8], limits: &validate::DataLimits) -> Result<Metadata, Refusal> {
        let value = validate::check_json(body, limits, "metadata").map_err(|i| {
            Refusal::invalid(
                if i.slug == "json-too-deep" {
                    i.slug
                } else {
                    "metadata-invalid"
                },
                i.detail,
            )
        })?;
        let md: Metadata = serde_json::from_value(value).map_err(|e| {
            // serde's messages name fields and expected types, not values.
            Refusal::invalid("metadata-invalid", format!("metadata: {e}"))
        })?;
        md.check()?;
        Ok(md)
    }

    /// Checks the routing fields' form: they appear in clear headers and logs.
    pub fn check(&self) -> Result<(), Refusal> {
        for (name, value) in [
            ("leistung", &self.leistung),
            ("destination", &self.destination),
        ] {
            if value.is_empty()
                || value.len() > 64
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            {
                return Err(Refusal::invalid(
                    "metadata-invalid",
                    format!("metadata.{name} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"),
                ));
            }
        }
        if self.reference.as_ref().is_some_and(|r| r.len() > 256) {
            return Err(Refusal::invalid(
                "metadata-invalid",
                "metadata.reference is longer than 256 bytes",
            ));
        }
        Ok(())
    }

    /// What else the portal said, for the sealed manifest.
    pub fn extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(r) = &self.reference {
            m.insert("reference".into(), r.clone().into());
        }
        if let Some(p) = &self.payment {
            m.insert("payment".into(), p.clone());
        }
        if let Some(r) = &self.reply_channel {
            m.insert("reply_channel".into(), r.clone());
        }
        m
    }
}

/// One validated part.
#[derive(Debug, Clone)]
pub struct Part {
    pub media_type: String,
    pub filename: Option<String>,
    pub data: Bytes,
}
