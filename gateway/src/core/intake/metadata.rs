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
        let md: Metadata = parse_part(body, limits)?;
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

/// A `metadata` part as `T`: JSON within the limits, no key twice.
fn parse_part<T: serde::de::DeserializeOwned>(
    body: &[u8],
    limits: &validate::DataLimits,
) -> Result<T, Refusal> {
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
    // A key given twice is refused, at any depth: "last one wins" would let
    // two readers of the same metadata see two different applications.
    serde_json::from_slice::<UniqueKeys>(body).map_err(|e| {
        Refusal::invalid(
            "metadata-invalid",
            format!(
                "metadata: {}",
                e.to_string().split(" at line").next().unwrap_or("")
            ),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        // serde's messages name fields and expected types, not values.
        Refusal::invalid("metadata-invalid", format!("metadata: {e}"))
    })
}

/// The `metadata` part of a reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyMetadata {
    /// What kind of answer: `bescheid`, `nachforderung`, `zahlungsaufforderung`, …
    pub reply_type: String,
    /// The Fachverfahren's own reference (its Aktenzeichen).
    #[serde(default)]
    pub reference: Option<String>,
}

impl ReplyMetadata {
    /// Parses and checks a reply's `metadata` part.
    pub fn parse(body: &[u8], limits: &validate::DataLimits) -> Result<ReplyMetadata, Refusal> {
        let md: ReplyMetadata = parse_part(body, limits)?;
        md.check()?;
        Ok(md)
    }

    /// Checks the fields' form: the type appears in clear in logs and records.
    pub fn check(&self) -> Result<(), Refusal> {
        let md = self;
        let t = &md.reply_type;
        if t.is_empty()
            || t.len() > 64
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(Refusal::invalid(
                "metadata-invalid",
                "metadata.reply_type must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'",
            ));
        }
        if md.reference.as_ref().is_some_and(|r| r.len() > 256) {
            return Err(Refusal::invalid(
                "metadata-invalid",
                "metadata.reference is longer than 256 bytes",
            ));
        }
        Ok(())
    }
}

/// One validated part.
#[derive(Debug, Clone)]
pub struct Part {
    pub media_type: String,
    pub filename: Option<String>,
    /// The plaintext; empty when the part was `sealed` as it arrived.
    pub data: Bytes,
    /// Set when the part was sealed into a spool as it arrived (see
    /// [`super::stream`]): then `data` is empty.
    pub sealed: Option<std::sync::Arc<super::stream::SealedPart>>,
}

impl Part {
    /// A part held in memory.
    pub fn held(media_type: String, filename: Option<String>, data: Bytes) -> Self {
        Part {
            media_type,
            filename,
            data,
            sealed: None,
        }
    }

    /// Bytes of its plaintext, held or sealed.
    pub fn size(&self) -> u64 {
        match &self.sealed {
            Some(s) => s.size,
            None => self.data.len() as u64,
        }
    }
}

/// Deserialises any JSON and fails on an object with the same key twice.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let shown: String = key.chars().filter(|c| !c.is_control()).take(40).collect();
                return Err(serde::de::Error::custom(format_args!(
                    "the key {shown:?} appears twice in one object"
                )));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let ok = br#"{"leistung":"99115005001000","destination":"05315000","payment":{"a":1,"b":[{"a":2}]}}"#;
        assert!(Metadata::parse(ok, &validate::DataLimits::of(&Default::default())).is_ok());
        for twice in [
            &br#"{"leistung":"99115005001000","destination":"05315000","leistung":"99999999999999"}"#[..],
            br#"{"leistung":"99115005001000","destination":"05315000","payment":{"x":1,"x":2}}"#,
            br#"{"leistung":"99115005001000","destination":"05315000","reply_channel":[{"k":1,"k":1}]}"#,
        ] {
            let r = Metadata::parse(twice, &validate::DataLimits::of(&Default::default())).unwrap_err();
            assert_eq!(r.slug, "metadata-invalid");
            assert!(r.detail.contains("appears twice"), "{}", r.detail);
        }
    }
}
