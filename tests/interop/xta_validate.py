#!/usr/bin/env python3
"""Validate XTA 2 (web service 2.1.1) SOAP 1.2 response envelopes against the
official schemas, independently of the gateway's own code.

    python3 xta_validate.py [--schemas DIR] [--op OP|auto] [--allow-non-xta-fault] FILE...

DIR is the folder holding XTA.wsdl and its XSDs (default: $OZG_SHARED/xta, else
../shared/xta beside the repository). For every FILE:

1. it must parse and its root must be a SOAP 1.2 env:Envelope; the envelope
   (Header?, Body, Fault) is validated against the SOAP 1.2 envelope schema
   (file ".xsd" in DIR), which treats header blocks and body content laxly;
2. every header block in a namespace the XTA schemas define (xta, osci,
   oscimeta, wsa) is validated strictly, as a root element, against one
   combined schema (a wrapper XSD written to a temp dir that xs:imports each
   namespace by absolute path), so an undeclared element is an error too;
   blocks in other namespaces are reported as skipped;
3. the Body's child (at most one) is validated strictly the same way; an
   env:Fault's Detail must carry an xta:*Exception, which is validated against
   XTA-Webservice-Exceptions.xsd (part of the combined schema);
4. with --op OP (an operation name of XTA.wsdl, or "auto" to take it from a
   file name like "007-getStatusList.xml" as xta_client.py --dump-dir writes
   them), the envelope must also be a plausible response of that operation:
   wsa:Action as the WSDL declares it, wsa:RelatesTo present, the header blocks
   the WSDL binding puts in the output, the right body element (or none), or a
   Fault whose exception the WSDL declares for that operation.

Prints "OK FILE" or "FAIL FILE" followed by the errors; exit status 1 if any
file failed, 2 on usage errors (e.g. schemas not found).
"""
import argparse
import copy
import os
import re
import sys
import tempfile
from pathlib import Path

from lxml import etree

S12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XTA = "http://xoev.de/transport/xta/211"
OSCI = "http://www.osci.eu/ws/2008/05/transport"
META = "http://www.osci.eu/ws/2014/10/transport"
VALIDATED_NS = {XTA: "xta", OSCI: "osci", META: "oscimeta", WSA: "wsa"}

A_XTA = "http://www.xta.de/XTA/"
A_OSCI = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/"
PD, TP, IM = "PermissionDeniedException", "XTAWSTechnicalProblemException", "InvalidMessageIDException"
PV, CD = "ParameterIsNotValidException", "CancelDeniedException"
SEND_FAULTS = (PD, PV, TP, "MessageSchemaViolationException", "MessageVirusDetectionException",
               "SyncAsyncException")
MMD = f"{{{META}}}MessageMetaData"
MBR = f"{{{OSCI}}}MsgBoxResponse"
GCC = f"{{{XTA}}}GenericContentContainer"
SL = f"{{{OSCI}}}MsgStatusList"

# operation -> (wsa:Action of request and response, required response header
# blocks, optional response header blocks, body child or None, declared faults)
OPERATIONS = {
    "checkAccountActive": (A_XTA + "CheckAccountActive", [], [], None, (PD, TP)),
    "createMessageId": (A_XTA + "CreateMessageID", [], [], f"{{{WSA}}}MessageID", (PD, TP)),
    "lookupService": (A_XTA + "IsServiceAvailable", [], [], f"{{{XTA}}}LookupServiceResponse",
                      (PD, PV, TP)),
    "getTransportReport": (A_XTA + "GetTransportReport", [], [], f"{{{XTA}}}TransportReport",
                           (PD, TP, IM)),
    "cancelMessage": (A_XTA + "CancelMessage", [], [], None, (PD, PV, TP, CD)),
    "sendMessage": (A_XTA + "SendMessage", [], [], None, SEND_FAULTS),
    "sendMessageSync": (A_XTA + "SendMessageSync", [MMD], [f"{{{OSCI}}}X509TokenContainer"], GCC,
                        SEND_FAULTS),
    "getMessage": (A_OSCI + "MsgBoxFetchRequest", [MMD], [MBR], GCC, (PD, TP, IM)),
    "getNextMessage": (A_OSCI + "MsgBoxGetNextMsgRequest", [MMD], [MBR], GCC, (PD, TP, IM)),
    "getStatusList": (A_OSCI + "MsgBoxStatusListRequest", [MBR], [], SL, (PD, TP)),
    "getNextStatusList": (A_OSCI + "MsgBoxGetNextListRequest", [MBR], [], SL, (PD, TP)),
    "close": (A_OSCI + "MsgBoxCloseRequest", [], [], None, (PD, TP, IM)),
}


def default_schema_dir():
    shared = os.environ.get("OZG_SHARED")
    if shared:
        return Path(shared) / "xta"
    return Path(__file__).resolve().parents[3] / "shared" / "xta"


def load_schemas(xsd_dir):
    """(SOAP 1.2 envelope schema, combined XTA schema)."""
    xsd_dir = Path(xsd_dir).resolve()
    need = ["XTA-Webservice-Globale-Elemente.xsd", "XTA-Webservice-Exceptions.xsd", "OSCI2_02.xsd",
            "OSCI_MessageMetaData_V2.02.xsd", "ws-addr.xsd", ".xsd"]
    missing = [n for n in need if not (xsd_dir / n).is_file()]
    if missing:
        raise SystemExit(f"xta_validate: schema files missing in {xsd_dir}: {', '.join(missing)}")

    def uri(name):
        return (xsd_dir / name).as_uri()

    tmp = Path(tempfile.mkdtemp(prefix="xta-validate-"))
    # Both XTA files share one namespace: libxml2 honours only the first
    # xs:import of a namespace, so a wrapper in that namespace includes both
    # (as the WSDL's own <types> schema does).
    (tmp / "xta-all.xsd").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{XTA}"
           elementFormDefault="qualified">
  <xs:include schemaLocation="{uri('XTA-Webservice-Globale-Elemente.xsd')}"/>
  <xs:include schemaLocation="{uri('XTA-Webservice-Exceptions.xsd')}"/>
</xs:schema>
""", encoding="utf-8")
    (tmp / "all.xsd").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:ozg-gateway:xta-validate">
  <xs:import namespace="{WSA}" schemaLocation="{uri('ws-addr.xsd')}"/>
  <xs:import namespace="{META}" schemaLocation="{uri('OSCI_MessageMetaData_V2.02.xsd')}"/>
  <xs:import namespace="{OSCI}" schemaLocation="{uri('OSCI2_02.xsd')}"/>
  <xs:import namespace="{XTA}" schemaLocation="{(tmp / 'xta-all.xsd').as_uri()}"/>
</xs:schema>
""", encoding="utf-8")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    try:
        envelope = etree.XMLSchema(etree.parse(str(xsd_dir / ".xsd"), parser))
        combined = etree.XMLSchema(etree.parse(str(tmp / "all.xsd"), parser))
    except etree.XMLSchemaParseError as e:
        raise SystemExit(f"xta_validate: cannot build the schema from {xsd_dir}: {e}")
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return envelope, combined


def qn(tag):
    """Readable prefix:local for a Clark name."""
    q = etree.QName(tag)
    prefix = VALIDATED_NS.get(q.namespace, "env" if q.namespace == S12 else q.namespace)
    return f"{prefix}:{q.localname}" if q.namespace else q.localname


def strict(schema, el, where):
    """Validate el as the root of its own document; return error strings.

    SOAP's own attributes on a header block (env:mustUnderstand, env:role,
    env:relay) are legal on any block, so they are removed from the copy."""
    dup = copy.deepcopy(el)
    for name in [n for n in dup.attrib if n.startswith(f"{{{S12}}}")]:
        del dup.attrib[name]
    tree = etree.ElementTree(dup)
    if schema.validate(tree):
        return []
    return [f"{where} {qn(el.tag)} (line {e.line}): {e.message}" for e in schema.error_log]


def elements(parent):
    return [c for c in parent if isinstance(c.tag, str)]


def check_file(path, env_schema, schema, op=None, allow_non_xta_fault=False):
    """Return (errors, notes) for one file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return [f"cannot read: {e}"], []
    return check_bytes(data, env_schema, schema, op, allow_non_xta_fault)


def check_bytes(data, env_schema, schema, op=None, allow_non_xta_fault=False):
    """Return (errors, notes) for one response body."""
    errors, notes = [], []
    parser = etree.XMLParser(no_network=True, resolve_entities=False, huge_tree=True,
                             remove_blank_text=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"], notes
    doc = etree.ElementTree(root)
    if root.tag != f"{{{S12}}}Envelope":
        if etree.QName(root).localname == "Envelope":
            return [f"root is {{{etree.QName(root).namespace}}}Envelope, not a SOAP 1.2 envelope "
                    f"({S12})"], notes
        return [f"root element is {root.tag}, not a SOAP 1.2 env:Envelope"], notes
    if not env_schema.validate(doc):
        errors += [f"SOAP envelope (line {e.line}): {e.message}" for e in env_schema.error_log]

    header = root.find(f"{{{S12}}}Header")
    body = root.find(f"{{{S12}}}Body")
    blocks = elements(header) if header is not None else []
    for block in blocks:
        ns = etree.QName(block).namespace
        if ns in VALIDATED_NS:
            errors += strict(schema, block, "header block")
        else:
            notes.append(f"header block {block.tag} not validated (namespace not in the XTA schemas)")

    children = elements(body) if body is not None else []
    fault = None
    if len(children) > 1:
        errors.append(f"Body has {len(children)} child elements; XTA responses carry at most one")
    for child in children:
        ns = etree.QName(child).namespace
        if child.tag == f"{{{S12}}}Fault":
            fault = child
            detail = child.find(f"{{{S12}}}Detail")
            items = elements(detail) if detail is not None else []
            xta_items = [d for d in items if etree.QName(d).namespace == XTA]
            if not xta_items and not allow_non_xta_fault:
                errors.append("env:Fault has no xta:*Exception in env:Detail")
            for d in items:
                if etree.QName(d).namespace in VALIDATED_NS:
                    errors += strict(schema, d, "fault detail")
                    if etree.QName(d).namespace == XTA and not d.tag.endswith("Exception"):
                        errors.append(f"fault detail {qn(d.tag)} is not an XTA exception element")
                else:
                    notes.append(f"fault detail {d.tag} not validated")
        elif ns in VALIDATED_NS:
            errors += strict(schema, child, "body")
        else:
            errors.append(f"body child {child.tag} is in no XTA namespace")

    if op:
        errors += check_operation(op, blocks, children, fault)
    return errors, notes


def check_operation(op, blocks, children, fault):
    action, required, optional, body_tag, faults = OPERATIONS[op]
    errs = []
    got = [b.tag for b in blocks]
    actions = [b.text.strip() if b.text else "" for b in blocks if b.tag == f"{{{WSA}}}Action"]
    if len(actions) != 1:
        errs.append(f"[{op}] expected exactly one wsa:Action header, found {len(actions)}")
    elif actions[0] != action:
        errs.append(f"[{op}] wsa:Action is {actions[0]!r}, the WSDL declares {action!r}")
    if f"{{{WSA}}}RelatesTo" not in got:
        errs.append(f"[{op}] no wsa:RelatesTo header (WS-Addressing reply)")
    for dup in {t for t in got if got.count(t) > 1}:
        errs.append(f"[{op}] header block {qn(dup)} appears {got.count(dup)} times")
    if fault is not None:
        detail = fault.find(f"{{{S12}}}Detail")
        names = [etree.QName(d).localname for d in elements(detail)] if detail is not None else []
        for n in names:
            if n not in faults:
                errs.append(f"[{op}] fault {n} is not declared for {op} (WSDL: {', '.join(faults)})")
        return errs
    for tag in required:
        if tag not in got:
            errs.append(f"[{op}] required header block {qn(tag)} missing")
    allowed = set(required) | set(optional)
    for tag in got:
        ns = etree.QName(tag).namespace
        if ns in (XTA, OSCI, META) and tag not in allowed:
            errs.append(f"[{op}] header block {qn(tag)} is not in the WSDL output of {op}")
    tags = [c.tag for c in children]
    if body_tag is None and tags:
        errs.append(f"[{op}] body must be empty, has {', '.join(qn(t) for t in tags)}")
    if body_tag is not None and tags != [body_tag]:
        errs.append(f"[{op}] body must hold {qn(body_tag)}, has "
                    f"{', '.join(qn(t) for t in tags) or 'nothing'}")
    return errs


def op_for(path, op):
    if op != "auto":
        return op
    m = re.match(r"^\d+-([A-Za-z]+)(?:\.[\w.-]+)?\.xml$", Path(path).name)
    if not m or m.group(1) not in OPERATIONS:
        m = re.match(r"^([A-Za-z]+)\.", Path(path).name)
    return m.group(1) if m and m.group(1) in OPERATIONS else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schemas", default=None, help="folder with XTA.wsdl and the XSDs")
    ap.add_argument("--op", default=None,
                    help="also check the envelope as a response of this operation ('auto': from "
                         "the file name)")
    ap.add_argument("--allow-non-xta-fault", action="store_true",
                    help="accept env:Fault without an xta:*Exception detail")
    ap.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    if a.op and a.op != "auto" and a.op not in OPERATIONS:
        ap.error(f"unknown operation {a.op}; one of: {', '.join(OPERATIONS)}")
    env_schema, schema = load_schemas(a.schemas or default_schema_dir())
    failed = 0
    for f in a.files:
        op = op_for(f, a.op) if a.op else None
        if a.op == "auto" and op is None:
            print(f"FAIL {f}\n  cannot tell the operation from the file name")
            failed += 1
            continue
        errors, notes = check_file(f, env_schema, schema, op, a.allow_non_xta_fault)
        if errors:
            failed += 1
            print(f"FAIL {f}" + (f" [{op}]" if op else ""))
            for e in errors:
                print(f"  {e}")
        elif not a.quiet:
            print(f"OK {f}" + (f" [{op}]" if op else ""))
        if not a.quiet:
            for n in notes:
                print(f"  note: {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
