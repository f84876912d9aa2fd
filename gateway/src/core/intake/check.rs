//! The checks of a submission's data before it is sealed: safe XML (no DOCTYPE,
//! bounded depth, attributes, elements and values) or JSON within its depth and
//! value limits, and the schema registered for the Leistung — a JSON Schema for
//! JSON data, an XML Schema for XML data.
//!
//! The checks are CPU work whose cost depends on what the portal sent, so data
//! over [`INLINE_CHECK_BYTES`] is checked on the [`ValidationPool`] (bounded
//! concurrency, a time budget per check), never on the I/O threads.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::core::intake::metadata::{Metadata, Part};
use crate::core::intake::pool::{Budget, ValidationPool};
use crate::core::intake::validate::{self, DataLimits};
use crate::core::intake::xsd::{XsdError, XsdSchema};
use crate::core::refusal::{Kind, Refusal};

/// Data up to this many bytes is checked on the I/O thread that received it:
/// within the data limits that costs less than handing it to the pool and back
/// (two thread wake-ups). Typical Antragsdaten are this small.
pub const INLINE_CHECK_BYTES: usize = 16 << 10;

/// What data is checked against: limits and the schemas of the Leistungen that
/// have one. Replaced as a whole by a reload.
pub struct CheckRules {
    /// The shape the data may have.
    pub limits: DataLimits,
    /// JSON Schemas by Leistung (JSON data).
    pub schemas: HashMap<String, Arc<jsonschema::Validator>>,
    /// XML Schemas by Leistung (XML data).
    pub xsds: HashMap<String, Arc<XsdSchema>>,
    /// The reply types `[reply_types]` lists (empty: any is taken).
    pub reply_types: Vec<String>,
}

/// The data checks: the rules in force and where the larger checks run.
pub struct DataChecks {
    pub rules: arc_swap::ArcSwap<CheckRules>,
    /// Where the checks of larger data run.
    pub pool: ValidationPool,
}

/// What to check a data part for.
enum Rules {
    Xml(Option<Arc<XsdSchema>>),
    Json(Option<Arc<jsonschema::Validator>>),
}

/// The checks of one data part, ready to run on any thread.
struct Work {
    rules: Rules,
    data: Bytes,
    limits: DataLimits,
    /// What the schema is of, for messages (`Leistung 99…`, `reply type bescheid`).
    of: String,
}

/// Whose schema a data part is checked against.
#[derive(Debug, Clone, Copy)]
pub enum SchemaOf<'a> {
    /// A submission's data: its Leistung's schema.
    Leistung(&'a str),
    /// A reply's data: its reply type's schema (`[reply_types]`).
    ReplyType(&'a str),
}

impl SchemaOf<'_> {
    /// Its key in [`CheckRules`]' maps: a reply type's is `reply/<type>`
    /// (`/` is in no Leistung key).
    pub fn key(&self) -> String {
        match self {
            SchemaOf::Leistung(l) => (*l).to_owned(),
            SchemaOf::ReplyType(t) => format!("reply/{t}"),
        }
    }

    fn name(&self) -> String {
        match self {
            SchemaOf::Leistung(l) => format!("Leistung {l}"),
            SchemaOf::ReplyType(t) => format!("reply type {t}"),
        }
    }
}

impl DataChecks {
    /// Checks the data part against its media type's safety rules and the
    /// Leistung's schema. Error details name positions and codes, never the data.
    pub async fn check(&self, md: &Metadata, data: &Part) -> Result<(), Refusal> {
        self.check_of(SchemaOf::Leistung(&md.leistung), data).await
    }

    /// Checks the data part against its media type's safety rules and the
    /// schema of `of`, if it has one.
    pub async fn check_of(&self, of: SchemaOf<'_>, data: &Part) -> Result<(), Refusal> {
        let work = self.work(of, data)?;
        if data.data.len() <= INLINE_CHECK_BYTES {
            work.run(&Budget::unlimited())
        } else {
            self.pool.run(move |budget| work.run(budget)).await?
        }
    }

    /// Which rules apply, by the data's media type and the Leistung's schema.
    fn work(&self, of: SchemaOf<'_>, data: &Part) -> Result<Work, Refusal> {
        let current = self.rules.load();
        let key = of.key();
        let schema = current.schemas.get(&key);
        let xsd = current.xsds.get(&key);
        let mt = data.media_type.as_str();
        let rules = if mt == "application/xml" || mt == "text/xml" || mt.ends_with("+xml") {
            if schema.is_some() {
                return Err(Refusal::new(
                    Kind::UnsupportedMediaType,
                    "unsupported-media-type",
                    format!(
                        "{} expects JSON data matching its schema, not XML",
                        of.name()
                    ),
                ));
            }
            Rules::Xml(xsd.cloned())
        } else if mt == "application/json" || mt.ends_with("+json") {
            if xsd.is_some() {
                return Err(Refusal::new(
                    Kind::UnsupportedMediaType,
                    "unsupported-media-type",
                    format!(
                        "{} expects XML data matching its XML Schema, not JSON",
                        of.name()
                    ),
                ));
            }
            Rules::Json(schema.cloned())
        } else {
            return Err(Refusal::new(
                Kind::UnsupportedMediaType,
                "unsupported-media-type",
                format!("data part has media type {mt}; use application/xml or application/json"),
            ));
        };
        Ok(Work {
            rules,
            data: data.data.clone(),
            limits: current.limits,
            of: of.name(),
        })
    }
}

impl Work {
    fn run(self, budget: &Budget) -> Result<(), Refusal> {
        let refusal = |i: validate::Invalid| match i.slug {
            "data-too-complex" => Refusal::new(Kind::Unprocessable, i.slug, i.detail),
            _ => Refusal::invalid(i.slug, i.detail),
        };
        match self.rules {
            Rules::Xml(xsd) => {
                validate::check_xml(&self.data, &self.limits, budget).map_err(refusal)?;
                let Some(xsd) = xsd else { return Ok(()) };
                // Only the position and libxml2's error code: its messages may quote the data.
                xsd.validate(&self.data, budget).map_err(|e| match e {
                    XsdError::Invalid { code, line } => Refusal::new(
                        Kind::Unprocessable,
                        "schema-violation",
                        format!(
                            "data does not match the XML Schema of {} at line {line} (libxml2 error {code})",
                            self.of
                        ),
                    ),
                    XsdError::OutOfTime => refusal(validate::too_complex(budget)),
                })
            }
            Rules::Json(schema) => {
                let value =
                    validate::check_json(&self.data, &self.limits, "data").map_err(refusal)?;
                let Some(schema) = schema else { return Ok(()) };
                if budget.spent() {
                    return Err(refusal(validate::too_complex(budget)));
                }
                validate::check_schema(&schema, &value, &self.of)
                    .map_err(|i| Refusal::new(Kind::Unprocessable, i.slug, i.detail))
            }
        }
    }
}
