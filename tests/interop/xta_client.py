#!/usr/bin/env python3
"""An independent XTA 2 (web service 2.1.1) client: zeep, driven by the official
WSDL, over HTTPS with a client certificate. The Rust integration tests use it to
talk to the gateway's XTA server the way a Fachverfahren would.

    python3 xta_client.py --wsdl XTA.wsdl --url URL --cert CERT.pem --key KEY.pem \
        --ca CA.pem --account ID [--dump-dir DIR] [--check-schemas DIR] COMMAND [ARGS]

All three port types (management, send, msgBox) are bound to URL (the WSDL's
address is a placeholder). zeep adds the WS-Addressing headers (wsa:Action,
wsa:MessageID, wsa:To) by itself because the WSDL declares wsam:Action on every
operation; the account goes into the oscimeta:Author header (Identifier with
type="xoev", see --author-type) wherever the operation's binding has it, and
into MessageMetaData/Originators/Author for sendMessage.

Commands (each prints one JSON object on stdout):
  check-account                          {"active": true}
  create-id                              {"message_id": ...}
  lookup-service SERVICE [--reader ID]   {"available": bool, "unknown": bool}
  send --message-id ID --service S --reader DEST --file PATH --content-type CT
       [--filename NAME] [--attach PATH:CT:NAME ...] [--business-scenario X]
       [--message-type Y] [--payload-schema URI]                   {"ok": true}
  status-list [--max N]                  {"messages": [...], "items_pending", "no_message",
                                          "request_id"}
  next-status-list --request-id R        same shape
  get MESSAGE_ID --out PATH              writes the Message content to PATH; prints
                                         {"message_id", "content_type", "filename", "size",
                                          "service", "attachments", ...}
  next-message --request-id R --out PATH same
  close MESSAGE_ID [--request-id R]      {"ok": true}
  report MESSAGE_ID                      {"status": {"code", "name"}, "raw": {...}}
  cancel MESSAGE_ID                      {"ok": true}

Exit status: 0 success; 3 SOAP fault, printed as {"fault": <local name of the
xta:*Exception in the Detail, or null>, "code": <errorCode/code>, "name":
<errorCode/name>, "reason": <env:Reason/env:Text>, "soap_code": <env:Code/env:Value>}
(check-account adds "active": false); 2 any other error, printed as {"error": ...}.

--dump-dir DIR writes every raw HTTP response body received (faults too) to
DIR/NNN-<operation>.xml, NNN continuing after the highest number already there,
<operation> being the WSDL operation name (xta_validate.py --op auto reads it).

--check-schemas DIR validates every response with xta_validate.py --op <operation>
against the XSDs in DIR before trusting it: zeep itself accepts responses that
miss required attributes or carry invalid values, so without it a schema
violation of the server goes unnoticed.

Plain http:// URLs work too (then --cert/--key/--ca are not needed). The
environment's REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and proxy variables are ignored.
"""
import argparse
import json
import os
import re
import sys
from pathlib import Path

XTA = "http://xoev.de/transport/xta/211"
OSCI = "http://www.osci.eu/ws/2008/05/transport"
S12 = "http://www.w3.org/2003/05/soap-envelope"
BINDINGS = {
    "mgmt": f"{{{XTA}}}managementHttpsBinding",
    "send": f"{{{XTA}}}sendXTAHttpsBinding",
    "msgbox": f"{{{XTA}}}msgBoxHttpsBinding",
}
STATUS_NAMES = {0: "open", 1: "green", 2: "yellow", 3: "red"}


class Failure(Exception):
    """Any non-fault error: exit 2."""


def _json_default(x):
    if hasattr(x, "isoformat"):
        return x.isoformat()
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


def out(obj, code=0):
    print(json.dumps(obj, ensure_ascii=False, default=_json_default))
    sys.exit(code)


class Dumper:
    """requests response hook: keeps the last raw response body and writes each
    one to DIR/NNN-<op>.xml."""

    def __init__(self, directory):
        self.dir = Path(directory) if directory else None
        self.op = "unknown"
        self.last = b""
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def hook(self, response, *args, **kwargs):
        self.last = response.content
        if not self.dir:
            return response
        nums = [int(m.group(1)) for p in self.dir.iterdir()
                if (m := re.match(r"^(\d+)-", p.name))]
        n = max(nums, default=0) + 1
        (self.dir / f"{n:03d}-{self.op}.xml").write_bytes(response.content)
        return response


def make_client(a, dumper):
    import requests
    from zeep import Client, Settings
    from zeep.transports import Transport

    session = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment beat
    # session.verify (requests issue #3829) and proxies from the environment apply.
    session.trust_env = False
    if a.cert:
        session.cert = (a.cert, a.key) if a.key else a.cert
    session.verify = a.ca if a.ca else True
    session.hooks["response"].append(dumper.hook)
    settings = Settings(strict=True, xml_huge_tree=True)
    client = Client(a.wsdl, transport=Transport(session=session, timeout=a.timeout,
                                                operation_timeout=a.timeout), settings=settings)
    # No zeep.wsa.WsAddressingPlugin here: zeep applies it itself for every
    # operation with a wsam:Action, and adding it again duplicates the headers.
    services = {k: client.create_service(v, a.url) for k, v in BINDINGS.items()}
    return client, services


def author(a):
    ident = {"_value_1": a.account, "type": a.author_type}
    if a.author_category:
        ident["category"] = a.author_category
    return {"Identifier": ident}


def party(ident, a):
    return {"Identifier": {"_value_1": ident, "type": a.author_type}}


def call(dumper, service, op, *args, **kwargs):
    dumper.op = op
    return getattr(service, op)(*args, **kwargs)


def val(x):
    """The text of a zeep simpleContent value (e.g. AttributedURIType) or x itself."""
    if x is None:
        return None
    return getattr(x, "_value_1", x)


def g(obj, *path):
    for p in path:
        if obj is None:
            return None
        obj = obj[p] if isinstance(obj, (list, tuple)) else getattr(obj, p, None)
    return obj


def summarize_metadata(m):
    return {
        "message_id": val(g(m, "MsgIdentification", "MessageID")),
        "service": g(m, "Qualifier", "Service"),
        "size": g(m, "MsgSize"),
        "author": val(g(m, "Originators", "Author", "Identifier")),
        "reader": val(g(m, "Destinations", "Reader", "Identifier")),
        "business_scenario": (g(m, "Qualifier", "BusinessScenario", "Defined", "code")
                              or g(m, "Qualifier", "BusinessScenario", "Undefined")),
        "message_type": g(m, "Qualifier", "MessageType", "code"),
    }


def msgbox_response(raw):
    """osci:MsgBoxResponse from the raw response. zeep 4.3 drops the
    ItemsPending/NoMessageAvailable choice when it parses this element as a
    SOAP header part, so it is read here with lxml."""
    from lxml import etree

    if not raw:
        return None
    doc = etree.fromstring(raw, etree.XMLParser(huge_tree=True, no_network=True,
                                                resolve_entities=False))
    el = doc.find(f"{{{S12}}}Header/{{{OSCI}}}MsgBoxResponse")
    if el is None:
        return None
    none = el.find(f"{{{OSCI}}}NoMessageAvailable")
    pending = el.findtext(f"{{{OSCI}}}ItemsPending")
    return {
        "MsgBoxRequestID": el.get("MsgBoxRequestID"),
        "ItemsPending": int(pending) if pending and pending.strip().isdigit() else None,
        "NoMessageAvailable": None if none is None else {"reason": none.get("reason")},
    }


def summarize_list(result, raw):
    box = msgbox_response(raw)
    body = g(result, "body")
    items = list(g(body, "MessageMetaData") or [])
    attrs = list(g(body, "MsgAttributes") or [])
    msgs = [summarize_metadata(m) for m in items]
    msgs += [{"message_id": val(g(x, "MessageID")), "service": None, "size": g(x, "MsgSize"),
              "author": None, "business_scenario": val(g(x, "TypeOfBusinessScenario"))}
             for x in attrs]
    box = box or {}
    none = box.get("NoMessageAvailable")
    return {
        "messages": msgs,
        "items_pending": box.get("ItemsPending"),
        "no_message": none is not None,
        "no_message_reason": (none or {}).get("reason"),
        "request_id": box.get("MsgBoxRequestID"),
    }


def write_message(result, raw, out_path, attach_dir):
    header = g(result, "header")
    body = g(result, "body")
    meta = g(header, "MessageMetaData")
    box = msgbox_response(raw) or {}
    cc = g(body, "ContentContainer")
    if cc is None:
        if g(body, "EncryptedData") is not None:
            raise Failure("the GenericContentContainer holds xenc:EncryptedData; not supported")
        raise Failure("response has no ContentContainer")
    msg = cc.Message
    data = msg._value_1 or b""
    Path(out_path).write_bytes(data)
    atts = list(cc.Attachment or [])
    listed = []
    for i, att in enumerate(atts):
        entry = {"content_type": att.contentType, "filename": att.filename, "size": att.size,
                 "bytes": len(att._value_1 or b"")}
        if attach_dir:
            os.makedirs(attach_dir, exist_ok=True)
            name = os.path.basename(att.filename or "") or f"attachment-{i + 1}"
            p = Path(attach_dir) / name
            p.write_bytes(att._value_1 or b"")
            entry["path"] = str(p)
        listed.append(entry)
    s = summarize_metadata(meta) if meta is not None else {}
    return {
        "message_id": s.get("message_id"),
        "content_type": msg.contentType,
        "filename": msg.filename,
        "size": msg.size,
        "bytes": len(data),
        "service": s.get("service"),
        "author": s.get("author"),
        "reader": s.get("reader"),
        "msg_size": s.get("size"),
        "attachments": len(atts),
        "attachment_list": listed,
        "request_id": box.get("MsgBoxRequestID"),
        "items_pending": box.get("ItemsPending"),
    }


def content_item(path, ctype, name):
    data = Path(path).read_bytes()
    item = {"_value_1": data, "contentType": ctype}
    if name:
        item["filename"] = name
    if data:  # size is xs:positiveInteger: leave it out for empty content
        item["size"] = len(data)
    return item, len(data)


def cmd_send(a, svc, dumper):
    msg, total = content_item(a.file, a.content_type, a.filename or os.path.basename(a.file))
    attachments = []
    for spec in a.attach or []:
        parts = spec.split(":")
        if len(parts) < 2:
            raise Failure(f"--attach wants PATH:CONTENT_TYPE[:NAME], got {spec!r}")
        # a content type has no ':'; the name may be missing
        path, ctype, name = parts[0], parts[1], ":".join(parts[2:]) or os.path.basename(parts[0])
        item, n = content_item(path, ctype, name)
        attachments.append(item)
        total += n
    scenario = ({"Undefined": a.business_scenario[len("undefined:"):]}
                if a.business_scenario.startswith("undefined:")
                else {"Defined": {"code": a.business_scenario, "listURI": a.business_scenario_list,
                                  "listVersionID": a.business_scenario_version}})
    meta = {
        "DeliveryAttributes": {},
        "Originators": {"Author": author(a)},
        "Destinations": {"Reader": party(a.reader, a)},
        "MsgIdentification": ({"MessageID": {"_value_1": a.message_id},
                               "In-Reply-To": [{"_value_1": a.in_reply_to}]}
                              if a.in_reply_to else {"MessageID": {"_value_1": a.message_id}}),
        "Qualifier": {
            "Service": a.service,
            "BusinessScenario": scenario,
            "MessageType": {"code": a.message_type, "listURI": a.message_type_list,
                            "listVersionID": a.message_type_version,
                            "payloadSchema": a.payload_schema},
        },
    }
    if total:
        meta["MsgSize"] = total
    container = {"Message": msg}
    if attachments:
        container["Attachment"] = attachments
    call(dumper, svc["send"], "sendMessage", ContentContainer=container,
         _soapheaders={"MessageMetaData": meta})
    return {"ok": True}


def run(a, dumper):
    client, svc = make_client(a, dumper)
    hdr = {"AuthorIdentifier": author(a)}
    c = a.command
    if c == "check-account":
        call(dumper, svc["mgmt"], "checkAccountActive", _soapheaders=hdr)
        return {"active": True}
    if c == "create-id":
        r = call(dumper, svc["mgmt"], "createMessageId", _soapheaders=hdr)
        mid = val(r)
        if not mid:
            raise Failure("createMessageId returned no wsa:MessageID")
        return {"message_id": mid}
    if c == "lookup-service":
        req = [{"LookupService": {"Reader": party(a.reader or a.account, a),
                                  "ServiceType": a.service}}]
        r = call(dumper, svc["mgmt"], "lookupService", LookupServiceRequestList=req,
                 _soapheaders=hdr)
        # zeep unwraps LookupServiceResponse/LookupServiceResultList to the list
        results = r if isinstance(r, list) else (g(r, "LookupServiceResult") or [])
        if not results or results[0] is None:
            raise Failure("lookupService returned no LookupServiceResult")
        v = results[0].IsServiceAvailableValue
        unknown = bool(getattr(v, "ServiceIsAvailableUnknown", None))
        return {"available": bool(getattr(v, "ServiceIsAvailable", False)) and not unknown,
                "unknown": unknown}
    if c == "send":
        return cmd_send(a, svc, dumper)
    if c == "status-list":
        kw = {"maxListItems": a.max} if a.max else {}
        if a.list_form:
            kw["ListForm"] = a.list_form
        r = call(dumper, svc["msgbox"], "getStatusList", _soapheaders=hdr, **kw)
        return summarize_list(r, dumper.last)
    if c == "next-status-list":
        r = call(dumper, svc["msgbox"], "getNextStatusList", MsgBoxRequestID=a.request_id,
                 LastMsgReceived=last_received(a), _soapheaders=hdr)
        return summarize_list(r, dumper.last)
    if c == "get":
        r = call(dumper, svc["msgbox"], "getMessage", MsgSelector={"MessageID": [a.message_id]},
                 _soapheaders=hdr)
        return write_message(r, dumper.last, a.out, a.attachments_dir)
    if c == "next-message":
        r = call(dumper, svc["msgbox"], "getNextMessage", MsgBoxRequestID=a.request_id,
                 LastMsgReceived=last_received(a), _soapheaders=hdr)
        return write_message(r, dumper.last, a.out, a.attachments_dir)
    if c == "close":
        call(dumper, svc["msgbox"], "close", MsgBoxRequestID=a.request_id or a.message_id,
             LastMsgReceived=[a.message_id], _soapheaders=hdr)
        return {"ok": True}
    if c == "report":
        r = call(dumper, svc["mgmt"], "getTransportReport", a.message_id, _soapheaders=hdr)
        return summarize_report(r)
    if c == "cancel":
        call(dumper, svc["mgmt"], "cancelMessage", a.message_id, _soapheaders=hdr)
        return {"ok": True}
    raise Failure(f"unknown command {c}")


def last_received(a):
    """LastMsgReceived sits in an optional xs:sequence; zeep insists on one item
    unless told to skip the element."""
    from zeep import xsd

    return [{"_value_1": m} for m in a.last] if a.last else xsd.SkipValue


def summarize_report(r):
    status = g(r, "MessageStatus")
    code = g(status, "Status")

    def records(lst, item):
        return [{"timestamp": g(x, "Timestamp"), "code": g(x, "Code", "code"),
                 "reason": g(x, "Reason")} for x in (g(status, lst, item) or [])]

    return {
        "status": {"code": code, "name": STATUS_NAMES.get(code, "unknown")},
        "raw": {
            "report_time": g(r, "ReportTime"),
            "server_identity": g(r, "XTAServerIdentity"),
            "metadata": summarize_metadata(g(r, "MessageMetaData")),
            "errors": records("ErrorList", "Error"),
            "warnings": records("WarnList", "Warning"),
            "infos": records("InfoList", "Info"),
            "additional_reports": len(g(r, "AdditionalReports", "Report") or []),
            "signed": g(r, "Signature") is not None,
        },
    }


def fault_json(f):
    from lxml import etree

    exc = code = name = None
    detail = f.detail
    if detail is not None:
        for child in detail:
            if isinstance(child.tag, str):
                exc = etree.QName(child).localname
                code = child.findtext("{*}errorCode/{*}code")
                name = child.findtext("{*}errorCode/{*}name")
                break
    return {"fault": exc, "code": code, "name": name, "reason": f.message, "soap_code": f.code}


def check_schemas(a, dumper):
    """With --check-schemas: the last response must pass xta_validate.py --op."""
    if a.check_schemas is None:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import xta_validate

    try:
        env_schema, schema = xta_validate.load_schemas(a.check_schemas)
    except SystemExit as e:
        out({"error": str(e.code)}, 2)
    errors, _ = xta_validate.check_bytes(dumper.last, env_schema, schema, dumper.op)
    if errors:
        out({"error": f"the {dumper.op} response violates the XTA schemas",
             "operation": dumper.op, "details": errors}, 2)


def parser():
    ap = argparse.ArgumentParser(description="XTA 2 client (zeep, from the official WSDL)")
    ap.add_argument("--wsdl", required=True)
    ap.add_argument("--url", required=True, help="endpoint of all three port types")
    ap.add_argument("--cert", help="client certificate (PEM)")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--ca", help="CA bundle to verify the server with")
    ap.add_argument("--account", required=True, help="the XTA account (oscimeta:Author)")
    ap.add_argument("--author-type", default="xoev",
                    help="Identifier/@type of Author and Reader (default xoev)")
    ap.add_argument("--author-category", help="Identifier/@category of the Author (optional)")
    ap.add_argument("--dump-dir", help="write each raw response body to DIR/NNN-<op>.xml")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--check-schemas", metavar="DIR",
                    help="also validate every response with xta_validate.py --op against the "
                         "XSDs in DIR; a violation is an error (exit 2)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check-account")
    sub.add_parser("create-id")
    p = sub.add_parser("lookup-service")
    p.add_argument("service")
    p.add_argument("--reader", help="the reader to ask about (default: --account)")
    p = sub.add_parser("send")
    p.add_argument("--message-id", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--reader", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--content-type", required=True)
    p.add_argument("--filename")
    p.add_argument("--attach", action="append", metavar="PATH:CT:NAME")
    p.add_argument("--business-scenario", default="XTA_TEST",
                   help="BusinessScenario/Defined/code, or 'undefined:TEXT' for Undefined")
    p.add_argument("--business-scenario-list", default="urn:de:dataport:codeliste:business.scenario")
    p.add_argument("--business-scenario-version", default="1")
    p.add_argument("--message-type", default="Nachricht", help="MessageType/code")
    p.add_argument("--in-reply-to", help="MsgIdentification/In-Reply-To: the message answered")
    p.add_argument("--message-type-list", default="urn:de:payloadSchema:elementName")
    p.add_argument("--message-type-version", default="1.0")
    p.add_argument("--payload-schema", default="urn:de:ozg-gateway:xta:payload",
                   help="MessageType/@payloadSchema (required by the schema)")
    p = sub.add_parser("status-list")
    p.add_argument("--max", type=int)
    p.add_argument("--list-form", choices=["MessageMetaData", "MsgAtrributes"],
                   help="ListForm attribute (sic, the schema spells MsgAtrributes)")
    p = sub.add_parser("next-status-list")
    p.add_argument("--request-id", required=True)
    p.add_argument("--last", action="append", metavar="MESSAGE_ID",
                   help="LastMsgReceived (repeatable; default: none)")
    for name in ("get", "next-message"):
        p = sub.add_parser(name)
        if name == "get":
            p.add_argument("message_id")
        else:
            p.add_argument("--request-id", required=True)
            p.add_argument("--last", action="append", metavar="MESSAGE_ID",
                           help="LastMsgReceived (repeatable; default: none)")
        p.add_argument("--out", required=True)
        p.add_argument("--attachments-dir", help="also write the attachments there")
    p = sub.add_parser("close")
    p.add_argument("message_id")
    p.add_argument("--request-id", help="MsgBoxRequestID (required attribute; default MESSAGE_ID)")
    for name in ("report", "cancel"):
        sub.add_parser(name).add_argument("message_id")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    dumper = Dumper(a.dump_dir)
    try:
        from zeep.exceptions import Fault
    except ImportError as e:
        out({"error": f"zeep missing: {e}"}, 2)
    try:
        result = run(a, dumper)
        check_schemas(a, dumper)
    except Fault as f:
        check_schemas(a, dumper)
        j = fault_json(f)
        if a.command == "check-account":
            j["active"] = False
        out(j, 3)
    except Exception as e:  # transport, TLS, parse, schema mismatch, usage
        out({"error": f"{type(e).__name__}: {e}"}, 2)
    out(result)


if __name__ == "__main__":
    main()
