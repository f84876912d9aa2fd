//! Checks of the data part before anything is sealed: safe, well-formed XML;
//! bounded JSON; the JSON Schema of the Leistung. Errors describe the problem
//! by position and rule only — they never echo the portal's data.

use quick_xml::events::Event;
use quick_xml::Reader;

/// A refusal of the data part; `slug` names the problem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub slug: &'static str,
    pub detail: String,
}

fn invalid(slug: &'static str, detail: impl Into<String>) -> Invalid {
    Invalid {
        slug,
        detail: detail.into(),
    }
}

const PREDEFINED: [&str; 5] = ["lt", "gt", "amp", "apos", "quot"];

/// Checks that `data` is UTF-8, well-formed XML with one root element, no DOCTYPE
/// (so no entity can be declared, expanded or fetched), only predefined and
/// character references, and nesting no deeper than `max_depth`.
pub fn check_xml(data: &[u8], max_depth: usize) -> Result<(), Invalid> {
    let text = std::str::from_utf8(data).map_err(|e| {
        invalid(
            "data-not-utf8",
            format!("XML data is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    if text.contains('\0') {
        return Err(invalid(
            "xml-malformed",
            "XML data contains a NUL character",
        ));
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    let pos = |r: &Reader<&[u8]>| r.buffer_position();
    loop {
        let event = reader.read_event().map_err(|e| {
            invalid(
                "xml-malformed",
                format!(
                    "XML is not well-formed at byte {}: {e}",
                    reader.error_position()
                ),
            )
        })?;
        match event {
            Event::DocType(_) => {
                return Err(invalid(
                    "xml-doctype",
                    format!("XML contains a DOCTYPE declaration at byte {}; DTDs and entity declarations are not accepted", pos(&reader)),
                ))
            }
            Event::Decl(decl) => {
                if let Some(Ok(enc)) = decl.encoding() {
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(invalid("xml-encoding", "XML declares an encoding other than UTF-8; send UTF-8"));
                    }
                }
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err(invalid("xml-malformed", format!("XML has more than one root element (at byte {})", pos(&reader))));
                    }
                }
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| invalid("xml-malformed", format!("bad attribute at byte {}: {e}", pos(&reader))))?;
                    attr.unescape_value().map_err(|_| {
                        invalid("xml-entity", format!("attribute at byte {} uses an undeclared entity reference", pos(&reader)))
                    })?;
                }
                if depth + 1 > max_depth {
                    return Err(invalid("xml-too-deep", format!("XML nesting exceeds {max_depth} levels")));
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap_or_default();
                if !(r.is_char_ref() || PREDEFINED.contains(&name.as_ref())) {
                    return Err(invalid("xml-entity", format!("XML references the undeclared entity &{name}; at byte {}", pos(&reader))));
                }
                if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|_| invalid("xml-malformed", format!("invalid character reference at byte {}", pos(&reader))))?;
                }
                if depth == 0 {
                    return Err(invalid("xml-malformed", "text outside the root element"));
                }
            }
            Event::Text(t) if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(invalid("xml-malformed", format!("text outside the root element at byte {}", pos(&reader))));
            }
            Event::CData(_) if depth == 0 => return Err(invalid("xml-malformed", "CDATA outside the root element")),
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(invalid(
            "xml-malformed",
            "XML ends before all elements are closed",
        ));
    }
    if roots == 0 {
        return Err(invalid("xml-malformed", "XML has no root element"));
    }
    Ok(())
}

/// Checks that `data` is UTF-8 JSON nested no deeper than `max_depth`.
/// The depth is checked on the bytes first, so a hostile nesting costs no recursion.
pub fn check_json(data: &[u8], max_depth: usize, what: &str) -> Result<serde_json::Value, Invalid> {
    std::str::from_utf8(data).map_err(|e| {
        invalid(
            "data-not-utf8",
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in data.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(invalid(
                        "json-too-deep",
                        format!("{what}: JSON nesting exceeds {max_depth} levels (at byte {i})"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    serde_json::from_slice(data).map_err(|e| {
        invalid(
            "json-malformed",
            format!(
                "{what} is not valid JSON: {} at line {}, column {}",
                json_error_class(&e),
                e.line(),
                e.column()
            ),
        )
    })
}

/// The class of a serde_json error without the input it quotes.
fn json_error_class(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected value",
        Category::Eof => "unexpected end of input",
    }
}

/// Validates JSON data against a Leistung's schema; the detail names the JSON
/// pointer and the rule, never the value.
pub fn check_schema(
    validator: &jsonschema::Validator,
    instance: &serde_json::Value,
    leistung: &str,
) -> Result<(), Invalid> {
    match validator.iter_errors(instance).next() {
        None => Ok(()),
        Some(e) => {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            Err(invalid(
                "schema-violation",
                format!(
                    "data does not match the schema of Leistung {leistung} at {path}: {}",
                    e.masked()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_xml() {
        check_xml(
            include_bytes!("../../../../schemas/examples/meldebescheinigung.xml"),
            64,
        )
        .unwrap();
        check_xml(b"<a x=\"&lt;&#65;\">&amp;&#x42;<b/></a>", 8).unwrap();
    }

    #[test]
    fn refuses_hostile_xml() {
        let laughs = b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><lolz>&lol2;</lolz>";
        assert_eq!(check_xml(laughs, 64).unwrap_err().slug, "xml-doctype");
        let xxe = b"<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>";
        assert_eq!(check_xml(xxe, 64).unwrap_err().slug, "xml-doctype");
        assert_eq!(
            check_xml(b"<a>&xxe;</a>", 64).unwrap_err().slug,
            "xml-entity"
        );
        assert_eq!(
            check_xml(b"<a b=\"&xxe;\"/>", 64).unwrap_err().slug,
            "xml-entity"
        );
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(
            check_xml(deep.as_bytes(), 256).unwrap_err().slug,
            "xml-too-deep"
        );
        assert_eq!(
            check_xml(b"<a><b></a></b>", 64).unwrap_err().slug,
            "xml-malformed"
        );
        assert_eq!(check_xml(b"<a>", 64).unwrap_err().slug, "xml-malformed");
        assert_eq!(
            check_xml(b"<a/><b/>", 64).unwrap_err().slug,
            "xml-malformed"
        );
        assert_eq!(check_xml(b"", 64).unwrap_err().slug, "xml-malformed");
        assert_eq!(
            check_xml(b"<a>\xff</a>", 64).unwrap_err().slug,
            "data-not-utf8"
        );
        assert_eq!(
            check_xml(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>", 64)
                .unwrap_err()
                .slug,
            "xml-encoding"
        );
    }

    #[test]
    fn depth_limit_is_exact() {
        let ok = format!("{}{}", "<a>".repeat(8), "</a>".repeat(8));
        check_xml(ok.as_bytes(), 8).unwrap();
        let ok = format!("{}<b/>{}", "<a>".repeat(7), "</a>".repeat(7));
        check_xml(ok.as_bytes(), 8).unwrap();
        check_json(b"[[[[]]]]", 4, "data").unwrap();
        assert_eq!(
            check_json(b"[[[[[]]]]]", 4, "data").unwrap_err().slug,
            "json-too-deep"
        );
    }

    #[test]
    fn json_checks() {
        assert_eq!(
            check_json(b"{\"a\": \"\xff\"}", 8, "data")
                .unwrap_err()
                .slug,
            "data-not-utf8"
        );
        assert_eq!(
            check_json(b"{\"a\": }", 8, "data").unwrap_err().slug,
            "json-malformed"
        );
        // Brackets inside strings do not count as nesting.
        check_json(b"{\"a\": \"[[[[[[[[\\\"[[[[\"}", 2, "data").unwrap();
        let err = check_json(b"{\"name\": \"MARKER\" ", 8, "data").unwrap_err();
        assert!(!err.detail.contains("MARKER"));
    }

    #[test]
    fn schema_errors_do_not_echo_values() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../schemas/examples/hundesteuer.schema.json"
        ))
        .unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let good: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../schemas/examples/hundesteuer.json"
        ))
        .unwrap();
        check_schema(&v, &good, "x").unwrap();
        let bad = serde_json::json!({"antragsteller": {"name": "MARKER", "anschrift": "x"}, "hund": {"rasse": "y", "geburtsjahr": "MARKER2"}});
        let err = check_schema(&v, &bad, "x").unwrap_err();
        assert_eq!(err.slug, "schema-violation");
        assert!(err.detail.contains("/hund/geburtsjahr"), "{}", err.detail);
        assert!(!err.detail.contains("MARKER"), "{}", err.detail);
    }
}
