use super::*;

/// getStatusList as zeep 4.3 puts it on the wire (generated from the XTA WSDL).
const ZEEP_GET_STATUS_LIST: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope"><soap-env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing"><ns0:Author xmlns:ns0="http://www.osci.eu/ws/2014/10/transport"><ns0:Identifier type="xoev">psw:01234567</ns0:Identifier></ns0:Author><wsa:Action>http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest</wsa:Action><wsa:MessageID>urn:uuid:fb784bde-e406-4ca4-b4b5-4f45e498b916</wsa:MessageID><wsa:To>https://xta.example.org/services/XTAService/MsgBoxPort</wsa:To></soap-env:Header><soap-env:Body><ns0:MsgBoxStatusListRequest xmlns:ns0="http://www.osci.eu/ws/2008/05/transport" maxListItems="10" ListForm="MessageMetaData"/></soap-env:Body></soap-env:Envelope>"#;

/// createMessageId: no body element at all.
const ZEEP_CREATE_MESSAGE_ID: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope"><soap-env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:Action>http://www.xta.de/XTA/CreateMessageID</wsa:Action><wsa:MessageID>urn:uuid:fe257645-48f3-4724-96c8-6906be398212</wsa:MessageID><wsa:To>REPLACE_WITH_ACTUAL_URL</wsa:To></soap-env:Header><soap-env:Body/></soap-env:Envelope>"#;

/// close with a nested body, other prefixes, a Java stack's mustUnderstand on
/// WS-Addressing and an escaped `&` in the Author's identifier.
const CLOSE: &str = r#"<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">
  <S:Header>
    <a:Action S:mustUnderstand="true">http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxCloseRequest</a:Action>
    <a:MessageID>urn:uuid:1</a:MessageID>
    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
    <m:Author xmlns:m="http://www.osci.eu/ws/2014/10/transport"><m:Identifier type="xoev" name="Stadt A &amp; B">psw:A&amp;B&#33;</m:Identifier></m:Author>
  </S:Header>
  <S:Body>
    <o:MsgBoxCloseRequest xmlns:o="http://www.osci.eu/ws/2008/05/transport" MsgBoxRequestID="1"><o:LastMsgReceived>urn:de:xta:messageid:x</o:LastMsgReceived></o:MsgBoxCloseRequest>
  </S:Body>
</S:Envelope>"#;

#[test]
fn reads_what_zeep_sends() {
    let r = read(ZEEP_GET_STATUS_LIST.as_bytes()).unwrap();
    assert_eq!(
        r.action,
        "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest"
    );
    assert_eq!(
        r.message_id.as_deref(),
        Some("urn:uuid:fb784bde-e406-4ca4-b4b5-4f45e498b916")
    );
    assert_eq!(
        r.author,
        Some(Author {
            identifier: "psw:01234567".into(),
            kind: "xoev".into()
        })
    );
    let body = r.body.unwrap();
    assert_eq!(
        (body.namespace.as_str(), body.local.as_str()),
        (
            "http://www.osci.eu/ws/2008/05/transport",
            "MsgBoxStatusListRequest"
        )
    );
    let element = &ZEEP_GET_STATUS_LIST[body.span];
    assert!(element.starts_with("<ns0:MsgBoxStatusListRequest") && element.ends_with("/>"));

    let r = read(ZEEP_CREATE_MESSAGE_ID.as_bytes()).unwrap();
    assert_eq!(r.action, "http://www.xta.de/XTA/CreateMessageID");
    assert_eq!((r.author, r.body), (None, None));
}

#[test]
fn reads_nested_bodies_entities_and_understood_headers() {
    let r = read(CLOSE.as_bytes()).unwrap();
    assert_eq!(r.author.as_ref().unwrap().identifier, "psw:A&B!");
    let body = r.body.unwrap();
    assert_eq!(body.local, "MsgBoxCloseRequest");
    let element = &CLOSE[body.span];
    assert!(element.starts_with("<o:MsgBoxCloseRequest"), "{element}");
    assert!(element.ends_with("</o:MsgBoxCloseRequest>"), "{element}");
}

/// What a refusal must be.
type Expect = fn(&SoapError) -> bool;

#[test]
fn refuses_what_is_not_a_plain_xta_request() {
    let doctype = ZEEP_GET_STATUS_LIST.replace(
        "<?xml version='1.0' encoding='utf-8'?>",
        "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>",
    );
    let soap11 = ZEEP_GET_STATUS_LIST.replace(
        "http://www.w3.org/2003/05/soap-envelope",
        "http://schemas.xmlsoap.org/soap/envelope/",
    );
    let no_action = ZEEP_CREATE_MESSAGE_ID.replace(
        "<wsa:Action>http://www.xta.de/XTA/CreateMessageID</wsa:Action>",
        "",
    );
    let reply_elsewhere = CLOSE.replace(
        "http://www.w3.org/2005/08/addressing/anonymous",
        "https://attacker.example/reply",
    );
    let must_understand = CLOSE.replace(
        "<a:MessageID>",
        "<x:Security xmlns:x=\"urn:other\" S:mustUnderstand=\"1\"/><a:MessageID>",
    );
    let two_bodies = ZEEP_GET_STATUS_LIST.replace("</soap-env:Body>", "<x/></soap-env:Body>");
    let deep = format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\"><s:Body>{}</s:Body></s:Envelope>",
        "<a>".repeat(40) + &"</a>".repeat(40)
    );
    let unknown_entity = CLOSE
        .replace("&amp; B", "&nbsp; B")
        .replace("A&amp;B", "A&nbsp;B");
    let cases: [(&str, &str, Expect); 8] = [
        ("doctype", &doctype, |e| *e == SoapError::Doctype),
        ("soap 1.1", &soap11, |e| *e == SoapError::NotSoap12),
        ("no action", &no_action, |e| *e == SoapError::NoAction),
        ("reply elsewhere", &reply_elsewhere, |e| {
            *e == SoapError::ReplyToNotAnonymous
        }),
        ("must understand", &must_understand, |e| {
            *e == SoapError::MustUnderstand("Security".into())
        }),
        ("two bodies", &two_bodies, |e| *e == SoapError::BodyNotOne),
        ("deep", &deep, |e| *e == SoapError::TooDeep),
        ("unknown entity", &unknown_entity, |e| {
            matches!(e, SoapError::Malformed(_))
        }),
    ];
    for (what, xml, expected) in cases {
        let e = read(xml.as_bytes()).unwrap_err();
        assert!(expected(&e), "{what}: {e:?}");
    }
    for garbage in ["", "<", "not xml", "<s:Envelope xmlns:s=\"x\">"] {
        assert!(read(garbage.as_bytes()).is_err(), "{garbage:?}");
    }
}

#[test]
fn faults_name_the_xta_exception_and_code_and_escape_text() {
    let f = fault(
        "http://www.xta.de/XTA/CreateMessageID",
        Some("urn:uuid:1"),
        Exception::PermissionDenied,
        9012,
        "Account <x> existiert nicht",
    );
    assert!(f.contains("<s12:Value>s12:Sender</s12:Value>"));
    assert!(f.contains("<xta:PermissionDeniedException><xta:errorCode listURI=\"urn:de:xta:webservice:codeliste:fehlernummer\" listVersionID=\"1.0\"><code>9012</code>"));
    assert!(f.contains("<wsa:RelatesTo>urn:uuid:1</wsa:RelatesTo>"));
    assert!(f.contains("Account &lt;x&gt; existiert nicht"));
    assert_eq!(Exception::PermissionDenied.http_status(), 400);
    let t = fault("a", None, Exception::TechnicalProblem, 9030, "intern");
    assert!(t.contains("s12:Receiver") && t.contains("XTAWSTechnicalProblemException"));
    assert_eq!(Exception::TechnicalProblem.http_status(), 500);
    // A fault is itself a well-formed SOAP envelope.
    let mut reader = quick_xml::Reader::from_str(&f);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed: {e}"),
        }
    }
}
