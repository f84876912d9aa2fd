#!/usr/bin/env python3
"""Check an ozg-gateway audit inclusion proof with an independent implementation.

What a receiver or an auditor runs on the document `ozg-gateway audit prove`
wrote, with the CA certificate and the gateway's seal certificate(s) as its
operator publishes them:

    python3 verify_proof.py PROOF.json CA.pem SEAL.pem [OLDER-SEAL.pem ...]

For every record in the document:
1. verify the checkpoint (a compact JWS, typ "ozg-audit-checkpoint" in the
   protected header): its x5c leaf must be one of the given seal certificates,
   issued by the CA, valid when the checkpoint was signed ("ts"), allowed to
   sign; the signature must verify with its key;
2. the record must belong to the document's submission, lie in the
   checkpoint's batch (records "from".."seq") and be recorded no later than the
   checkpoint was signed;
3. hash the record's exact bytes as an RFC 9162 leaf, SHA-256(0x00 || record),
   and follow the audit path (RFC 9162 section 2.1.3.2) to the signed "root".

Exit status 0 and a JSON summary on success; non-zero with a message otherwise.
"""
import base64
import hashlib
import json
import sys
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwk, jws

from open_envelope import fail, verify_chain

ALGORITHMS = ["ES256", "PS256", "PS512"]


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2: the root an inclusion path leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def timestamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def verify_checkpoint(token_text, ca, seals, seq):
    """The checkpoint's payload if it is a seal's valid signature, else fail()."""
    parts = token_text.split(".")
    if len(parts) != 3:
        fail(f"record {seq}: the checkpoint is not a compact JWS")
    header = json.loads(b64url(parts[0]))  # the protected header, nothing else
    payload = json.loads(b64url(parts[1]))
    if header.get("typ") != "ozg-audit-checkpoint" or header.get("alg") not in ALGORITHMS:
        fail(f"record {seq}: the checkpoint has the wrong typ or alg")
    leaf = verify_chain(header["x5c"], ca)
    if base64.b64decode(header["x5c"][0]) not in seals:
        fail(f"record {seq}: the checkpoint is signed by {leaf.subject.rfc4514_string()}, not by a pinned seal")
    signed_at = timestamp(payload["ts"])
    if not leaf.not_valid_before_utc <= signed_at <= leaf.not_valid_after_utc:
        fail(f"record {seq}: the seal certificate was not valid when the checkpoint was signed")
    if signed_at > datetime.now(timezone.utc):
        fail(f"record {seq}: the checkpoint is dated in the future")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            fail(f"record {seq}: the seal certificate may not sign")
    except x509.ExtensionNotFound:
        pass
    token = jws.JWS()
    token.deserialize(token_text)
    try:
        token.verify(jwk.JWK.from_pyca(leaf.public_key()), alg=header["alg"])
    except Exception as e:  # noqa: BLE001 - report any failure by name
        fail(f"record {seq}: checkpoint signature does not verify ({e})")
    return json.loads(token.payload)


def main():
    proof_path, ca_path, *seal_paths = sys.argv[1:]
    if not seal_paths:
        fail("usage: verify_proof.py PROOF.json CA.pem SEAL.pem [OLDER-SEAL.pem ...]")
    doc = json.load(open(proof_path))
    ca = x509.load_pem_x509_certificate(open(ca_path, "rb").read())
    seals = {x509.load_pem_x509_certificate(open(p, "rb").read()).public_bytes(Encoding.DER)
             for p in seal_paths}
    if doc.get("type") != "ozg-audit-inclusion-proof" or doc.get("version") != 1:
        fail("not an ozg-gateway inclusion proof (version 1)")
    if not doc["records"]:
        fail("the document proves no record")
    proven = []
    for p in doc["records"]:
        seq = p["seq"]
        checkpoint = verify_checkpoint(p["checkpoint"], ca, seals, seq)
        first, last = checkpoint["from"], checkpoint["seq"]
        if not first <= seq <= last:
            fail(f"record {seq}: not in the checkpoint's batch {first}..{last}")
        if p["leaf_index"] != seq - first or p["tree_size"] != last - first + 1:
            fail(f"record {seq}: leaf {p['leaf_index']} of {p['tree_size']} does not fit the checkpoint")
        record = json.loads(p["record"])
        if record["seq"] != seq or record.get("submission_id") != doc["submission_id"]:
            fail(f"record {seq}: not record {seq} of submission {doc['submission_id']}")
        if timestamp(record["ts"]) > timestamp(checkpoint["ts"]):
            fail(f"record {seq}: recorded after the checkpoint was signed")
        path = [bytes.fromhex(h) for h in p["path"]]
        if any(len(h) != 32 for h in path):
            fail(f"record {seq}: the audit path holds a value that is not a SHA-256")
        root = root_from_path(leaf_hash(p["record"].encode()), p["leaf_index"], p["tree_size"], path)
        if root is None or root.hex() != checkpoint["root"]:
            fail(f"record {seq}: the audit path does not lead to the signed root")
        proven.append({"seq": seq, "event": record["event"], "target": record.get("target"),
                       "checkpoint": last})
    print(json.dumps({"submission_id": doc["submission_id"], "records": proven}))


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError, TypeError, IndexError) as e:
        fail(f"malformed proof document ({type(e).__name__}: {e})")
