"""The unmodified `fitconnect` SDK (PyPI, 0.4.2) against the gateway's Zustelldienst.

    python3 fitconnect_roundtrip.py BASE_URL DESTINATION SENDER_ID SENDER_SECRET \
        SUBSCRIBER_ID SUBSCRIBER_SECRET DESTINATION_KEY_PEM LEISTUNG MARKER

With `--send-only` after MARKER: only sends (Hundesteuer data with MARKER as the
applicant's name) and prints {"submission_id", "case_id"}.

Sends one submission (JSON data with MARKER, one small attachment) as the sender,
then, as the subscriber, lists the destination's submissions and retrieves it with
the destination's private key (the SDK decrypts and checks every hash). The SDK
has no event log, so the subscriber then accepts with requests and jwcrypto: a
PS512 Security Event Token with the authentication tags of what it received,
posted to the case's event log; the log is read back and the gateway's
`submit-submission` event verified with its published JWKS. Prints one JSON line:
{"submission_id", "listed", "data", "attachments", "events", "submit_event_verified"}.
REQUESTS_CA_BUNDLE must name the CA of the gateway's certificate.
"""
import json
import os
import sys
import time
import uuid

import requests
from jwcrypto import jws, jwt

from jwcrypto import jwk

import fitconnect
from fitconnect import Environment, FITConnectClient


def client(base, client_id, secret):
    # The SDK reads its URLs from this table when a client is made.
    fitconnect.fitconnect._ENVIRONMENT_CONFIG[Environment.TESTING] = {
        "TOKEN_URL": f"{base}/token",
        "SUBMISSION_API_URL": f"{base}/v1",
    }
    return FITConnectClient(Environment.TESTING, client_id, secret)


def main():
    base, dest, sid, ssec, rid, rsec, key_pem, leistung, marker = sys.argv[1:10]
    sender = client(base, sid, ssec)
    if sys.argv[10:11] == ["--send-many"]:
        ids = []
        for n in range(int(sys.argv[11])):
            data = {"antragsteller": {"name": f"{marker}-{n}", "anschrift": "Heidestraße 17, 51147 Köln"},
                    "hund": {"rasse": "Mischling", "geburtsjahr": 2021}}
            sent = sender.submission(dest, leistung, data=data,
                                     data_schema={"schemaUri": "https://schema.example/hundesteuer.schema.json",
                                                  "mimeType": "application/json"})
            ids.append(sent["submissionId"])
        print(json.dumps({"submission_ids": ids}))
        return
    if sys.argv[10:] == ["--send-only-invalid"]:
        # Data the Hundesteuer schema refuses (no dog).
        sent = sender.submission(dest, leistung, data={"antragsteller": {"name": marker, "anschrift": "x"}},
                                 data_schema={"schemaUri": "https://schema.example/hundesteuer.schema.json",
                                              "mimeType": "application/json"})
        print(json.dumps({"submission_id": sent["submissionId"], "case_id": sent.get("caseId")}))
        return
    if sys.argv[10:] == ["--send-only"]:
        # Hundesteuer data as the example schema wants them (no $schema member:
        # the schema reference goes in the metadata).
        data = {"antragsteller": {"name": marker, "anschrift": "Heidestraße 17, 51147 Köln"},
                "hund": {"rasse": "Mischling", "geburtsjahr": 2021}}
        sent = sender.submission(dest, leistung, data=data, attachments=[b"%PDF-1.7 " + marker.encode()],
                                 data_schema={"schemaUri": "https://schema.example/hundesteuer.schema.json",
                                              "mimeType": "application/json"})
        print(json.dumps({"submission_id": sent["submissionId"], "case_id": sent.get("caseId")}))
        return
    data = {
        "$schema": "https://schema.example/hundesteuer.schema.json",
        "antragsteller": marker,
    }
    attachment = b"%PDF-1.7 FIT-Connect demo attachment " + marker.encode()
    sent = sender.submission(dest, leistung, data=data, attachments=[attachment])
    submission_id = sent["submissionId"]

    subscriber = client(base, rid, rsec)
    listed = [s["submissionId"] for s in subscriber.available_submissions()]
    with open(key_pem, "rb") as f:
        lines = [l for l in f.read().splitlines(keepends=True) if not l.startswith(b"#")]
    private = json.loads(jwk.JWK.from_pem(b"".join(lines)).export_private())
    got = subscriber.retrieve_submission(submission_id, private)
    events, verified = accept(base, rid, rsec, submission_id, got)
    print(json.dumps({
        "submission_id": submission_id,
        "listed": listed,
        "data": got["data_json"],
        "attachments": [a.decode("latin-1") for a in got["attachments"].values()],
        "events": events,
        "submit_event_verified": verified,
    }))


def accept(base, rid, rsec, submission_id, got):
    token = requests.post(f"{base}/token", data={
        "grant_type": "client_credentials", "client_id": rid, "client_secret": rsec}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    case = got["caseId"]
    tags = {
        "metadata": got["encryptedMetadata"].split(".")[-1],
        "data": got["encryptedData"].split(".")[-1],
        "attachments": {},
    }
    for aid in got["attachments"]:
        raw = requests.get(f"{base}/v1/submissions/{submission_id}/attachments/{aid}", headers=auth)
        tags["attachments"][aid] = raw.text.split(".")[-1]
    # The subscriber's signature key: the one the gateway has its certificate of,
    # or a fresh one where the gateway checks no signature.
    key_file = os.environ.get("FIT_SUBSCRIBER_KEY")
    if key_file:
        with open(key_file, "rb") as f:
            signing = jwk.JWK.from_pem(f.read())
    else:
        signing = jwk.JWK.generate(kty="RSA", size=4096)
    set_ = jwt.JWT(
        header={"typ": "secevent+jwt", "alg": "PS512", "kid": signing.thumbprint()},
        claims={
            "$schema": "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json",
            "jti": str(uuid.uuid4()), "iss": got["destinationId"], "iat": int(time.time()),
            "sub": f"submission:{submission_id}", "txn": f"case:{case}",
            "events": {"https://schema.fitko.de/fit-connect/events/accept-submission": {"authenticationTags": tags}},
        },
    )
    set_.make_signed_token(signing)
    posted = requests.post(f"{base}/v1/cases/{case}/events", data=set_.serialize(),
                           headers={**auth, "Content-Type": "application/jose"})
    if posted.status_code != 204:
        raise SystemExit(f"accept-submission refused: {posted.status_code} {posted.text}")
    log = requests.get(f"{base}/v1/cases/{case}/events", headers=auth).json()["eventLog"]
    keys = jwk.JWKSet.from_json(requests.get(f"{base}/.well-known/jwks.json").text)
    first = jws.JWS()
    first.deserialize(log[0])
    first.verify(keys.get_key(json.loads(first.objects["protected"])["kid"]), alg="PS512")
    payload = json.loads(first.payload)
    verified = "https://schema.fitko.de/fit-connect/events/submit-submission" in payload["events"]
    return log, verified


if __name__ == "__main__":
    main()
