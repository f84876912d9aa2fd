//! XSD validation of XML data with the system's libxml2 (the reference
//! implementation of XML Schema that XÖV tooling relies on).
//!
//! Only two things cross the boundary: a compiled schema (parsed once from the
//! configured file, includes resolved relative to it) and, per submission, a
//! document that `validate::check_xml` has already accepted (UTF-8, no DOCTYPE, no
//! entities, within the data limits). libxml2's own error output is switched off;
//! the first error's code and line are captured, never its message (which may
//! quote data).
//!
//! A document is validated as it is read (libxml2's `xmlTextReader` with the
//! schema plugged in), not as a tree: memory stays flat however many elements it
//! has, and the [`Budget`] is looked at between nodes, so a validation that runs
//! out of time or is no longer awaited stops there.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::sync::Once;

use crate::core::intake::pool::Budget;

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
    // `void` up to libxml2 2.11, `int` since; the result is not read either way
    // (on the platforms we build for a return value left unread is harmless).
    fn xmlSchemaInitTypes();
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
    fn xmlSchemaIsValid(ctxt: *mut c_void) -> c_int;
    fn xmlSchemaFreeValidCtxt(ctxt: *mut c_void);
    fn xmlReaderForMemory(
        buf: *const c_char,
        size: c_int,
        url: *const c_char,
        enc: *const c_char,
        options: c_int,
    ) -> *mut c_void;
    fn xmlTextReaderSetStructuredErrorHandler(
        reader: *mut c_void,
        f: StructuredErrorFn,
        user: *mut c_void,
    );
    fn xmlTextReaderSchemaValidateCtxt(
        reader: *mut c_void,
        ctxt: *mut c_void,
        options: c_int,
    ) -> c_int;
    fn xmlTextReaderRead(reader: *mut c_void) -> c_int;
    fn xmlFreeTextReader(reader: *mut c_void);
}

/// Why a document was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsdError {
    /// The first error libxml2 reported: its code and line.
    Invalid { code: i32, line: i32 },
    /// The budget was spent before the document was read to its end.
    OutOfTime,
}

/// Nodes read between two looks at the budget.
const NODES_PER_BUDGET_CHECK: u32 = 256;

/// `xmlErrorLevel`: warnings are not errors.
const XML_ERR_ERROR: c_int = 2;

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
            if let Some(e) = err.as_ref().filter(|e| e.level >= XML_ERR_ERROR) {
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
        // SAFETY: both are documented as safe to call once before threads use
        // libxml2. The built-in types (xs:string, xs:date, …) are set up here,
        // once: left to the first schema parse, two schemas parsed at once on two
        // threads (parallel tests; a reload beside a registration) raced in
        // libxml2 2.9's lazy set-up and one of them found `xs:date` unresolved.
        INIT.call_once(|| unsafe {
            xmlInitParser();
            xmlSchemaInitTypes();
        });
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

    /// Validates a document as it reads it; stops when `budget` is spent.
    pub fn validate(&self, xml: &[u8], budget: &Budget) -> Result<(), XsdError> {
        let len = c_int::try_from(xml.len()).map_err(|_| XsdError::Invalid { code: 0, line: 0 })?;
        let mut first = First::default();
        let first_ptr: *mut First = &mut first;
        let (mut rc, mut nodes) = (0, 0u32);
        // SAFETY: `xml` is valid for `len` bytes while the reader exists; the reader
        // is freed before the validation context it uses, both before returning;
        // the schema lives as long as `self`; `first` outlives both (see first_error).
        unsafe {
            let vctxt = xmlSchemaNewValidCtxt(self.schema.as_ptr());
            if vctxt.is_null() {
                return Err(XsdError::Invalid { code: 0, line: 0 });
            }
            xmlSchemaSetValidStructuredErrors(vctxt, first_error, first_ptr as *mut c_void);
            let reader = xmlReaderForMemory(
                xml.as_ptr() as *const c_char,
                len,
                c"data.xml".as_ptr(),
                std::ptr::null(),
                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING,
            );
            if reader.is_null() {
                xmlSchemaFreeValidCtxt(vctxt);
                return Err(XsdError::Invalid { code: 1, line: 0 });
            }
            // Parse errors and (relayed by the reader) validity errors both land in `first`.
            xmlTextReaderSetStructuredErrorHandler(reader, first_error, first_ptr as *mut c_void);
            let plugged = xmlTextReaderSchemaValidateCtxt(reader, vctxt, 0);
            let mut out_of_time = false;
            if plugged == 0 {
                loop {
                    rc = xmlTextReaderRead(reader);
                    // Only the first error is reported: reading on would only cost.
                    if rc != 1 || (*first_ptr).0.is_some() {
                        break;
                    }
                    nodes += 1;
                    if nodes % NODES_PER_BUDGET_CHECK == 0 && budget.spent() {
                        out_of_time = true;
                        break;
                    }
                }
            }
            let valid =
                plugged == 0 && rc == 0 && (*first_ptr).0.is_none() && xmlSchemaIsValid(vctxt) == 1;
            xmlFreeTextReader(reader);
            xmlSchemaFreeValidCtxt(vctxt);
            if out_of_time {
                Err(XsdError::OutOfTime)
            } else if valid {
                Ok(())
            } else {
                let (code, line) = first.0.unwrap_or((i32::from(rc < 0), 0));
                Err(XsdError::Invalid { code, line })
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
        let budget = Budget::unlimited();
        xsd.validate(
            include_bytes!("../../../../schemas/examples/meldebescheinigung.xml"),
            &budget,
        )
        .unwrap();
        let bad = b"<antrag xmlns=\"urn:example:meldebescheinigung\">\n<zweck>x</zweck>\n<anzahl>MARKER</anzahl>\n</antrag>";
        let XsdError::Invalid { code, line } = xsd.validate(bad, &budget).unwrap_err() else {
            panic!("not a violation");
        };
        assert!(code > 0 && line >= 2, "{code} {line}");
        // Used from several threads at once.
        let xsd = std::sync::Arc::new(xsd);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let xsd = xsd.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        xsd.validate(
                            include_bytes!("../../../../schemas/examples/meldebescheinigung.xml"),
                            &Budget::unlimited(),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }

    #[test]
    fn a_spent_budget_stops_the_reading_and_broken_xml_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liste.xsd");
        std::fs::write(
            &path,
            "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:element name=\"liste\"><xs:complexType><xs:sequence>\
             <xs:element name=\"e\" maxOccurs=\"unbounded\"/></xs:sequence></xs:complexType></xs:element></xs:schema>",
        )
        .unwrap();
        let xsd = XsdSchema::load(&path).unwrap();
        let many = format!("<liste>{}</liste>", "<e/>".repeat(10_000));
        xsd.validate(many.as_bytes(), &Budget::unlimited()).unwrap();
        let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let spent = Budget::starting_now(std::time::Duration::from_secs(60), abandoned);
        assert_eq!(
            xsd.validate(many.as_bytes(), &spent),
            Err(XsdError::OutOfTime)
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas/examples/meldebescheinigung.xsd");
        let xsd = XsdSchema::load(&path).unwrap();
        // Well-formed for the safety check (which does not know namespaces), not for libxml2.
        let unbound = b"<antrag xmlns=\"urn:example:meldebescheinigung\">\n\n<x:zweck>MARKER</x:zweck></antrag>";
        let XsdError::Invalid { code, line } =
            xsd.validate(unbound, &Budget::unlimited()).unwrap_err()
        else {
            panic!("not a violation");
        };
        assert!(code > 1 && line == 3, "{code} {line}");
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
