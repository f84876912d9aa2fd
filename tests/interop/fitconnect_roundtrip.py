"""The unmodified `fitconnect` SDK (PyPI, 0.4.2) against the gateway's Zustelldienst.

    python3 fitconnect_roundtrip.py BASE_URL DESTINATION SENDER_ID SENDER_SECRET \
        SUBSCRIBER_ID SUBSCRIBER_SECRET DESTINATION_KEY_PEM LEISTUNG MARKER

Sends one submission (JSON data with MARKER, one small attachment) as the sender,
then, as the subscriber, lists the destination's submissions and retrieves it with
the destination's private key (the SDK decrypts and checks every hash). Prints one
JSON line: {"submission_id", "listed", "data", "attachments"}. REQUESTS_CA_BUNDLE
must name the CA of the gateway's certificate.
"""
import json
import sys

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
    print(json.dumps({
        "submission_id": submission_id,
        "listed": listed,
        "data": got["data_json"],
        "attachments": [a.decode("latin-1") for a in got["attachments"].values()],
    }))


if __name__ == "__main__":
    main()
