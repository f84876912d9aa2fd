//! The checks of a submission's data before it is sealed: safe XML (no DOCTYPE,
//! bounded depth, attributes, elements and values) or JSON within its depth and
//! value limits, and the schema registered for the Leistung — a JSON Schema for
//! JSON data, an XML Schema for XML data.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::intake::metadata::{Metadata, Part};
use crate::core::intake::pool::Budget;
use crate::core::intake::validate::{self, DataLimits};
use crate::core::intake::xsd::{XsdError, XsdSchema};
use crate::core::refusal::{Kind, Refusal};

/// The data checks, with the schemas of the Leistungen that have one.
pub struct DataChecks {
    /// The shape the data may have.
    pub limits: DataLimits,
    /// JSON Schemas by Leistung (JSON data).
    pub schemas: HashMap<String, Arc<jsonschema::Validator>>,
    /// XML Schemas by Leistung (XML data).
    pub xsds: HashMap<String, Arc<XsdSchema>>,
}

impl DataChecks {
    /// Checks the data part against its media type's safety rules and the
    /// Leistung's schema. Error details name positions and codes, never the data.
    pub fn check(&self, md: &Metadata, data: &Part) -> Result<(), Refusal> {
        let to_refusal = |i: validate::Invalid| Refusal::invalid(i.slug, i.detail);
        let schema = self.schemas.get(&md.leistung);
        let mt = data.media_type.as_str();
        if mt == "application/xml" || mt == "text/xml" || mt.ends_with("+xml") {
            if schema.is_some() {
                return Err(Refusal::new(
                    Kind::UnsupportedMediaType,
                    "unsupported-media-type",
                    format!(
                        "Leistung {} expects JSON data matching its schema, not XML",
                        md.leistung
                    ),
                ));
            }
            validate::check_xml(&data.data, &self.limits, &Budget::unlimited())
                .map_err(to_refusal)?;
            match self.xsds.get(&md.leistung) {
                // Only the position and libxml2's error code: its messages may quote the data.
                Some(xsd) => xsd.validate(&data.data, &Budget::unlimited()).map_err(|e| match e {
                    XsdError::Invalid { code, line } => Refusal::new(
                        Kind::Unprocessable,
                        "schema-violation",
                        format!(
                            "data does not match the XML Schema of Leistung {} at line {line} (libxml2 error {code})",
                            md.leistung
                        ),
                    ),
                    XsdError::OutOfTime => Refusal::new(
                        Kind::Unprocessable,
                        "data-too-complex",
                        "checking the data took too long",
                    ),
                }),
                None => Ok(()),
            }
        } else if mt == "application/json" || mt.ends_with("+json") {
            if self.xsds.contains_key(&md.leistung) {
                return Err(Refusal::new(
                    Kind::UnsupportedMediaType,
                    "unsupported-media-type",
                    format!(
                        "Leistung {} expects XML data matching its XML Schema, not JSON",
                        md.leistung
                    ),
                ));
            }
            let value =
                validate::check_json(&data.data, &self.limits, "data").map_err(to_refusal)?;
            match schema {
                Some(v) => validate::check_schema(v, &value, &md.leistung)
                    .map_err(|i| Refusal::new(Kind::Unprocessable, i.slug, i.detail)),
                None => Ok(()),
            }
        } else {
            Err(Refusal::new(
                Kind::UnsupportedMediaType,
                "unsupported-media-type",
                format!("data part has media type {mt}; use application/xml or application/json"),
            ))
        }
    }
}
