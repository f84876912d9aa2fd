//! A request envelope as a small element tree, for the operations to read
//! their header blocks and body: names with their resolved namespaces,
//! attributes, decoded text. Built only after [`super::soap::read`] accepted
//! the envelope (no DOCTYPE, bounded depth); the caller bounds its size.

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

/// One element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub ns: String,
    pub name: String,
    /// Attributes by local name (namespaced attributes too: XTA uses none that clash).
    pub attrs: Vec<(String, String)>,
    /// The text directly inside, entity references resolved.
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this local name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a path of local names.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, p| n.child(p))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text.
    pub fn value(&self) -> &str {
        self.text.trim()
    }
}

fn ns_text(r: &ResolveResult) -> String {
    match r {
        ResolveResult::Bound(Namespace(ns)) => String::from_utf8_lossy(ns).into_owned(),
        _ => String::new(),
    }
}

/// The document's root element with everything in it.
pub fn parse(xml: &[u8]) -> Result<Node, String> {
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Node> = vec![Node::default()];
    let bad = |at: u64| format!("not well-formed XML at byte {at}");
    loop {
        let before = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|_| bad(before))?;
        match event {
            Event::DocType(_) => return Err("a DOCTYPE is not allowed".into()),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut node = Node {
                    ns: ns_text(&ns),
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Node::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|_| bad(before))?;
                    let key = a.key.local_name();
                    if a.key.as_ref().starts_with(b"xmlns") {
                        continue;
                    }
                    let value = a
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|_| bad(before))?;
                    node.attrs.push((
                        String::from_utf8_lossy(key.as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                if matches!(event, Event::Empty(_)) {
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(node);
                    }
                } else {
                    stack.push(node);
                }
            }
            Event::Text(t) => {
                let t = t.decode().map_err(|_| bad(before))?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t);
                }
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|_| bad(before))?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|_| bad(before))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|_| bad(before))?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&c);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| bad(before))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err(bad(before)),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut doc = stack
        .pop()
        .filter(|_| stack.is_empty())
        .ok_or("unclosed elements")?;
    doc.children.pop().ok_or_else(|| "no root element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_namespaces_attributes_and_text_are_read() {
        let xml = br#"<e:E xmlns:e="urn:e" xmlns:w="urn:w"><e:H><w:A k="v&amp;w">x &lt; y&#65;</w:A><w:B/></e:H></e:E>"#;
        let root = parse(xml).unwrap();
        assert_eq!((root.ns.as_str(), root.name.as_str()), ("urn:e", "E"));
        let a = root.at(&["H", "A"]).unwrap();
        assert_eq!(a.ns, "urn:w");
        assert_eq!(a.attr("k"), Some("v&w"));
        assert_eq!(a.value(), "x < yA");
        assert!(root.at(&["H", "B"]).is_some());
        assert_eq!(root.child("H").unwrap().all("A").count(), 1);
    }

    #[test]
    fn unknown_entities_and_doctypes_are_refused() {
        assert!(parse(b"<a>&foo;</a>").is_err());
        assert!(parse(b"<!DOCTYPE a><a/>").is_err());
        assert!(parse(b"<a><b></a>").is_err());
    }
}
