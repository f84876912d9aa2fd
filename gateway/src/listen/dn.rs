//! Distinguished names compared as what they are: a sequence of RDNs, each a set
//! of (attribute type, value) pairs — never as display strings, in which
//! `O=Stadt Musterstadt, CN=buergerportal` (two attributes) and one `O` attribute
//! holding `Stadt Musterstadt, CN=buergerportal` look the same.
//!
//! A configured subject ([`Dn::parse`]) is written with the syntax and escaping
//! rules of RFC 4514 — `type=value` pairs separated by `,` (a new RDN) or `+`
//! (another attribute of the same RDN); `\` escapes `, + " \ < > ; = #` and
//! spaces, `\XX` is a byte in hex; unescaped spaces around separators and at the
//! ends of a value do not count — but in the certificate's own order, the order
//! the gateway and `openssl x509 -noout -subject` print (`C=DE, O=…, CN=…`), not
//! RFC 4514's reversed one. Types are the usual short names (case does not
//! matter) or dotted OIDs; the `#hex` value form is refused. A certificate's
//! subject ([`Dn::from_x509`]) is read attribute by attribute from the DER.
//!
//! Two names are equal when they have the same RDNs in the same order, each with
//! the same types and exactly the same values (character for character; no case
//! folding, the ASN.1 string type does not matter).

use std::fmt;

use x509_parser::asn1_rs::Tag;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Attribute type names accepted in a configured subject, with their OIDs.
const TYPES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("commonName", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("surname", "2.5.4.4"),
    ("serialNumber", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("countryName", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("localityName", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("stateOrProvinceName", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("streetAddress", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("organizationName", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("organizationalUnitName", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("businessCategory", "2.5.4.15"),
    ("postalCode", "2.5.4.17"),
    ("GN", "2.5.4.42"),
    ("givenName", "2.5.4.42"),
    ("initials", "2.5.4.43"),
    ("pseudonym", "2.5.4.65"),
    ("organizationIdentifier", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("domainComponent", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("userId", "0.9.2342.19200300.100.1.1"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("Email", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// One attribute: its type as a dotted OID, and its value.
type Attribute = (String, String);

/// A distinguished name: RDNs in order, the attributes of each sorted (an RDN is
/// a set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dn(Vec<Vec<Attribute>>);

fn oid_of(name: &str) -> Option<String> {
    if let Some((_, oid)) = TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Some((*oid).to_owned());
    }
    let dotted = name.split('.').count() >= 2
        && name
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    dotted.then(|| name.to_owned())
}

fn short_name(oid: &str) -> &str {
    TYPES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(n, _)| *n)
        .unwrap_or(oid)
}

/// Characters a value may not hold unescaped.
const MUST_ESCAPE: &[char] = &['"', ';', '<', '>'];
/// Characters that may follow a `\`.
const ESCAPABLE: &[char] = &['"', '+', ',', ';', '<', '>', '\\', ' ', '#', '='];

impl Dn {
    /// Parses a configured subject (see the module docs); the error says what
    /// is wrong and where.
    pub fn parse(text: &str) -> Result<Dn, String> {
        if text.trim().is_empty() {
            return Err("the subject is empty".into());
        }
        let mut chars = text.chars().peekable();
        let mut rdns = Vec::new();
        let mut rdn: Vec<Attribute> = Vec::new();
        loop {
            // The attribute type, up to `=`.
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('=') => break,
                    Some(c @ (',' | '+')) if name.trim().is_empty() => {
                        return Err(format!("an attribute is missing before `{c}`"))
                    }
                    Some(c @ (',' | '+')) => {
                        return Err(format!("`{}` has no `=value` before `{c}`", name.trim()))
                    }
                    Some(c) => name.push(c),
                    None if name.trim().is_empty() => {
                        return Err("an attribute is missing after the last separator".into())
                    }
                    None => return Err(format!("`{}` has no `=value`", name.trim())),
                }
            }
            let name = name.trim();
            if name.is_empty() {
                return Err("an attribute type is missing before `=`".into());
            }
            let oid = oid_of(name).ok_or_else(|| {
                format!("unknown attribute type `{name}`; use CN, O, OU, C, L, ST, DC, serialNumber, … or a dotted OID")
            })?;
            // The value, up to an unescaped `,` or `+`.
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek() == Some(&'#') {
                return Err(format!(
                    "the value of `{name}` uses the #hex form, which is not supported; write it as text (escape a leading # as \\#)"
                ));
            }
            let mut value: Vec<u8> = Vec::new();
            // Length of the value up to its last character that counts (escaped
            // or not a space): unescaped trailing spaces are dropped.
            let mut significant = 0;
            let mut separator = None;
            while let Some(c) = chars.next() {
                match c {
                    ',' | '+' => {
                        separator = Some(c);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some(e) if ESCAPABLE.contains(&e) => {
                            value.push(e as u8);
                            significant = value.len();
                        }
                        Some(h) if h.is_ascii_hexdigit() => {
                            let l = chars.next().filter(char::is_ascii_hexdigit).ok_or_else(|| {
                                format!("`\\{h}` in the value of `{name}` is not a pair of hex digits")
                            })?;
                            let byte = u8::from_str_radix(&format!("{h}{l}"), 16)
                                .map_err(|e| e.to_string())?;
                            value.push(byte);
                            significant = value.len();
                        }
                        Some(e) => {
                            return Err(format!(
                                "`\\{e}` in the value of `{name}` is no escape; escape only , + \" \\ < > ; = # and spaces, or write \\XX in hex"
                            ))
                        }
                        None => return Err(format!("the value of `{name}` ends with a lone `\\`")),
                    },
                    c if MUST_ESCAPE.contains(&c) => {
                        return Err(format!(
                            "unescaped `{c}` in the value of `{name}`; write it as `\\{c}`"
                        ))
                    }
                    c => {
                        let mut buf = [0u8; 4];
                        value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        if c != ' ' {
                            significant = value.len();
                        }
                    }
                }
            }
            value.truncate(significant);
            let value = String::from_utf8(value)
                .map_err(|_| format!("the escaped bytes in the value of `{name}` are not UTF-8"))?;
            rdn.push((oid, value));
            match separator {
                Some('+') => continue,
                Some(_) => {
                    rdn.sort();
                    rdns.push(std::mem::take(&mut rdn));
                }
                None => {
                    rdn.sort();
                    rdns.push(rdn);
                    return Ok(Dn(rdns));
                }
            }
        }
    }

    /// A certificate's subject or issuer; `None` if a value is not a string
    /// the gateway can read (such a name matches no configured subject).
    pub fn from_x509(name: &X509Name<'_>) -> Option<Dn> {
        let mut rdns = Vec::new();
        for rdn in name.iter_rdn() {
            let mut attributes = rdn
                .iter()
                .map(|a| Some((a.attr_type().to_id_string(), text_of(a)?)))
                .collect::<Option<Vec<_>>>()?;
            attributes.sort();
            rdns.push(attributes);
        }
        Some(Dn(rdns))
    }
}

/// The text of an attribute value of a string type.
fn text_of(a: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = a.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // Teletex: only where it is plain ASCII (T.61 differs above it).
        Tag::TeletexString if data.is_ascii() => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString if data.len() % 2 == 0 => String::from_utf16(
            &data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .ok(),
        Tag::UniversalString if data.len() % 4 == 0 => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

impl fmt::Display for Dn {
    /// RFC 4514 escaping, in the certificate's order (what [`Dn::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, (oid, value)) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str(" + ")?;
                }
                write!(f, "{}=", short_name(oid))?;
                let last = value.chars().count().saturating_sub(1);
                for (k, c) in value.chars().enumerate() {
                    let edge = (k == 0 && (c == ' ' || c == '#')) || (k == last && c == ' ');
                    if edge || ['"', '+', ',', ';', '<', '>', '\\'].contains(&c) {
                        write!(f, "\\{c}")?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(pairs: &[&[(&str, &str)]]) -> Dn {
        Dn(pairs
            .iter()
            .map(|rdn| {
                let mut v: Vec<Attribute> = rdn
                    .iter()
                    .map(|(o, v)| ((*o).to_owned(), (*v).to_owned()))
                    .collect();
                v.sort();
                v
            })
            .collect())
    }

    #[test]
    fn separators_make_attributes_and_escapes_keep_them_in_the_value() {
        assert_eq!(
            Dn::parse("O=Stadt Musterstadt, CN=buergerportal").unwrap(),
            dn(&[
                &[("2.5.4.10", "Stadt Musterstadt")],
                &[("2.5.4.3", "buergerportal")]
            ])
        );
        assert_eq!(
            Dn::parse(r"O=Stadt Musterstadt\, CN=buergerportal").unwrap(),
            dn(&[&[("2.5.4.10", "Stadt Musterstadt, CN=buergerportal")]])
        );
        assert_eq!(
            Dn::parse(r"o = A\2C B\+C , cn=x\5Cy\C3\A4 + 2.5.4.5=42").unwrap(),
            dn(&[
                &[("2.5.4.10", "A, B+C")],
                &[("2.5.4.3", "x\\yä"), ("2.5.4.5", "42")]
            ])
        );
        assert_eq!(
            Dn::parse(r"CN=\ padded\ ,O=x").unwrap(),
            dn(&[&[("2.5.4.3", " padded ")], &[("2.5.4.10", "x")]])
        );
        assert_eq!(
            Dn::parse("CN=").unwrap(),
            dn(&[&[("2.5.4.3", "")]]),
            "an empty value is allowed"
        );
    }

    #[test]
    fn order_is_kept_and_multi_valued_rdns_are_sets() {
        let a = Dn::parse("O=x, CN=y").unwrap();
        assert_ne!(a, Dn::parse("CN=y, O=x").unwrap());
        assert_eq!(
            Dn::parse("CN=y + OU=z").unwrap(),
            Dn::parse("OU=z+CN=y").unwrap()
        );
        assert_ne!(a, Dn::parse("O=x + CN=y").unwrap());
    }

    #[test]
    fn unparsable_subjects_say_why() {
        for (text, words) in [
            ("", "empty"),
            ("O=Stadt Musterstadt, CN", "`CN` has no `=value`"),
            ("O=x,", "missing after the last separator"),
            ("O=x,,CN=y", "missing before `,`"),
            ("O, CN=y", "`O` has no `=value` before `,`"),
            ("=x", "type is missing"),
            ("Foo=x", "unknown attribute type `Foo`"),
            ("CN=#0403", "#hex form"),
            ("CN=a\"b", "unescaped `\"`"),
            ("CN=a;b", "unescaped `;`"),
            (r"CN=a\q", r"`\q`"),
            (r"CN=a\4", "hex digits"),
            (r"CN=a\", "lone"),
            (r"CN=\FF", "not UTF-8"),
        ] {
            let err = Dn::parse(text).unwrap_err();
            assert!(err.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_reads_back() {
        for text in [
            r"O=Stadt Musterstadt\, CN=buergerportal",
            r"C=DE, O=a\+b, CN=\ x\ ",
            "CN=y + OU=z",
            r"CN=\#1",
        ] {
            let parsed = Dn::parse(text).unwrap();
            assert_eq!(Dn::parse(&parsed.to_string()).unwrap(), parsed, "{text}");
        }
    }

    #[test]
    fn certificate_subjects_are_read_attribute_by_attribute() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
        let subject = |attrs: &[(DnType, &str)]| {
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            for (t, v) in attrs {
                name.push(t.clone(), *v);
            }
            params.distinguished_name = name;
            let key = KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            Dn::from_x509(x.subject()).unwrap()
        };
        let configured = Dn::parse("O=Stadt Musterstadt, CN=buergerportal").unwrap();
        assert_eq!(
            subject(&[
                (DnType::OrganizationName, "Stadt Musterstadt"),
                (DnType::CommonName, "buergerportal")
            ]),
            configured
        );
        assert_ne!(
            subject(&[(
                DnType::OrganizationName,
                "Stadt Musterstadt, CN=buergerportal"
            )]),
            configured
        );
    }
}
