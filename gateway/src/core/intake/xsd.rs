//! XSD validation of XML data with the system's libxml2 (the reference
//! implementation of XML Schema that XÖV tooling relies on).
//!
//! Only two things cross the boundary: a compiled schema (parsed once from the
//! configured file, includes resolved relative to it) and, per submission, a
//! document that `validate::check_xml` has already accepted (UTF-8, no DOCTYPE, no
//! entities, bounded depth). libxml2's own error output is switched off; the first
//! error's code and line are captured, never its message (which may quote data).

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::sync::Once;

/// `xmlError` of libxml2 2.9–2.13 (xmlerror.h), read only by [`first_error`].
#[repr(C)]
struct XmlError {
    domain: c_int,
    code: c_int,
    message: *mut c_char,
    level: c_int,
    file: *mut c_char,
    line: c_int,
    str1: *mut c_char,
    str2: *mut c_char,
    str3: *mut c_char,
    int1: c_int,
    int2: c_int,
    ctxt: *mut c_void,
    node: *mut c_void,
}

type StructuredErrorFn = extern "C" fn(*mut c_void, *const XmlError);

const XML_PARSE_NOERROR: c_int = 1 << 5;
const XML_PARSE_NOWARNING: c_int = 1 << 6;
const XML_PARSE_NONET: c_int = 1 << 11;

#[link(name = "xml2")]
extern "C" {
    fn xmlInitParser();
    fn xmlSchemaNewParserCtxt(url: *const c_char) -> *mut c_void;
    fn xmlSchemaSetParserStructuredErrors(
        ctxt: *mut c_void,
        f: StructuredErrorFn,
        user: *mut c_void,
    );
    fn xmlSchemaParse(ctxt: *mut c_void) -> *mut c_void;
    fn xmlSchemaFreeParserCtxt(ctxt: *mut c_void);
    fn xmlSchemaFree(schema: *mut c_void);
    fn xmlSchemaNewValidCtxt(schema: *mut c_void) -> *mut c_void;
    fn xmlSchemaSetValidStructuredErrors(
        ctxt: *mut c_void,
        f: StructuredErrorFn,
        user: *mut c_void,
    );
    fn xmlSchemaValidateDoc(ctxt: *mut c_void, doc: *mut c_void) -> c_int;
    fn xmlSchemaFreeValidCtxt(ctxt: *mut c_void);
    fn xmlReadMemory(
        buf: *const c_char,
        size: c_int,
        url: *const c_char,
        enc: *const c_char,
        options: c_int,
    ) -> *mut c_void;
    fn xmlFreeDoc(doc: *mut c_void);
}

/// The first error reported: (libxml2 error code, line).
#[derive(Default)]
struct First(Option<(i32, i32)>);

/// Records the first structured error into the `First` passed as `user`.
extern "C" fn first_error(user: *mut c_void, err: *const XmlError) {
    // SAFETY: `user` is the `&mut First` handed to libxml2 together with this callback
    // by `XsdSchema::load`/`validate`; it outlives the libxml2 call that reports
    // errors (both are local to that function and the context is freed before it
    // returns). `err` is either null or valid for the duration of the callback.
    unsafe {
        let first = &mut *(user as *mut First);
        if first.0.is_none() {
            if let Some(e) = err.as_ref() {
                first.0 = Some((e.code, e.line));
            }
        }
    }
}

/// A compiled XML Schema.
pub struct XsdSchema {
    schema: NonNull<c_void>,
}

// SAFETY: an xmlSchema is immutable after xmlSchemaParse; libxml2 documents that one
// schema may be used by several validation contexts, in several threads, at once
// (each `validate` call creates its own context). It is freed only in Drop.
unsafe impl Send for XsdSchema {}
// SAFETY: see Send: shared use only reads the schema.
unsafe impl Sync for XsdSchema {}

static INIT: Once = Once::new();

impl XsdSchema {
    /// Parses the schema file (and what it includes) once, at start-up.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        // SAFETY: xmlInitParser is documented as safe to call once before threads use libxml2.
        INIT.call_once(|| unsafe { xmlInitParser() });
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| "path contains NUL".to_string())?;
        let mut first = First::default();
        // SAFETY: c_path is a valid C string for the call; the parser context is freed
        // below on every path; `first` outlives the context (see first_error).
        unsafe {
            let ctxt = xmlSchemaNewParserCtxt(c_path.as_ptr());
            if ctxt.is_null() {
                return Err(format!("cannot open {}", path.display()));
            }
            xmlSchemaSetParserStructuredErrors(
                ctxt,
                first_error,
                &mut first as *mut First as *mut c_void,
            );
            let schema = xmlSchemaParse(ctxt);
            xmlSchemaFreeParserCtxt(ctxt);
            match NonNull::new(schema) {
                Some(schema) => Ok(XsdSchema { schema }),
                None => Err(match first.0 {
                    Some((code, line)) => format!(
                        "{} is not a valid XML Schema (libxml2 error {code} at line {line})",
                        path.display()
                    ),
                    None => format!("{} is not a valid XML Schema", path.display()),
                }),
            }
        }
    }

    /// Validates a document; `Err((code, line))` names the first violation.
    pub fn validate(&self, xml: &[u8]) -> Result<(), (i32, i32)> {
        let len = c_int::try_from(xml.len()).map_err(|_| (0, 0))?;
        let mut first = First::default();
        // SAFETY: `xml` is valid for `len` bytes during the call; the document and the
        // validation context are freed before returning; the schema lives as long as
        // `self`; `first` outlives the validation context (see first_error).
        unsafe {
            let doc = xmlReadMemory(
                xml.as_ptr() as *const c_char,
                len,
                c"data.xml".as_ptr(),
                std::ptr::null(),
                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING,
            );
            if doc.is_null() {
                return Err((1, 0));
            }
            let vctxt = xmlSchemaNewValidCtxt(self.schema.as_ptr());
            if vctxt.is_null() {
                xmlFreeDoc(doc);
                return Err((0, 0));
            }
            xmlSchemaSetValidStructuredErrors(
                vctxt,
                first_error,
                &mut first as *mut First as *mut c_void,
            );
            let rc = xmlSchemaValidateDoc(vctxt, doc);
            xmlSchemaFreeValidCtxt(vctxt);
            xmlFreeDoc(doc);
            match rc {
                0 => Ok(()),
                _ => Err(first.0.unwrap_or((rc, 0))),
            }
        }
    }
}

impl Drop for XsdSchema {
    fn drop(&mut self) {
        // SAFETY: the schema came from xmlSchemaParse and is freed exactly once, here.
        unsafe { xmlSchemaFree(self.schema.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_the_example_and_names_the_line_of_a_violation() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/examples/meldebescheinigung.xsd");
        let xsd = XsdSchema::load(&path).unwrap();
        xsd.validate(include_bytes!(
            "../../../../schemas/examples/meldebescheinigung.xml"
        ))
        .unwrap();
        let bad = b"<antrag xmlns=\"urn:example:meldebescheinigung\">\n<zweck>x</zweck>\n<anzahl>MARKER</anzahl>\n</antrag>";
        let (code, line) = xsd.validate(bad).unwrap_err();
        assert!(code > 0 && line >= 2, "{code} {line}");
        // Used from several threads at once.
        let xsd = std::sync::Arc::new(xsd);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let xsd = xsd.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        xsd.validate(include_bytes!(
                            "../../../../schemas/examples/meldebescheinigung.xml"
                        ))
                        .unwrap();
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }

    #[test]
    fn a_broken_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.xsd");
        std::fs::write(
            &p,
            "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:element/></xs:schema>",
        )
        .unwrap();
        assert!(XsdSchema::load(&p).is_err());
    }
}
