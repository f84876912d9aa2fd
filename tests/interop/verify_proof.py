#!/usr/bin/env python3
"""Check an ozg-gateway audit inclusion proof with an independent implementation.

What a receiver or an auditor runs on the document `ozg-gateway audit prove`
wrote, with nothing but the CA certificate:

    python3 verify_proof.py PROOF.json CA.pem

For every record in the document:
1. verify the checkpoint (a compact JWS, typ "ozg-audit-checkpoint"): its x5c
   leaf must be issued by the CA and the signature must verify with its key;
2. the record must belong to the document's submission and lie in the
   checkpoint's batch (records "from".."seq");
3. hash the record's exact bytes as an RFC 9162 leaf, SHA-256(0x00 || record),
   and follow the audit path (RFC 9162 section 2.1.3.2) to the signed "root".

Exit status 0 and a JSON summary on success; non-zero with a message otherwise.
"""
import hashlib
import json
import sys

from cryptography import x509
from jwcrypto import jwk, jws

from open_envelope import fail, verify_chain


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


def main():
    proof_path, ca_path = sys.argv[1:3]
    doc = json.load(open(proof_path))
    ca = x509.load_pem_x509_certificate(open(ca_path, "rb").read())
    if doc.get("type") != "ozg-audit-inclusion-proof" or doc.get("version") != 1:
        fail("not an ozg-gateway inclusion proof (version 1)")
    if not doc["records"]:
        fail("the document proves no record")
    proven = []
    for p in doc["records"]:
        seq = p["seq"]
        token = jws.JWS()
        token.deserialize(p["checkpoint"])
        header = token.jose_header
        if header.get("typ") != "ozg-audit-checkpoint":
            fail(f"record {seq}: the checkpoint has the wrong typ")
        leaf_cert = verify_chain(header["x5c"], ca)
        try:
            token.verify(jwk.JWK.from_pyca(leaf_cert.public_key()), alg=header["alg"])
        except Exception as e:  # noqa: BLE001 - report any failure by name
            fail(f"record {seq}: checkpoint signature does not verify ({e})")
        checkpoint = json.loads(token.payload)
        first, last = checkpoint["from"], checkpoint["seq"]
        if not first <= seq <= last:
            fail(f"record {seq}: not in the checkpoint's batch {first}..{last}")
        record = json.loads(p["record"])
        if record["seq"] != seq or record.get("submission_id") != doc["submission_id"]:
            fail(f"record {seq}: not record {seq} of submission {doc['submission_id']}")
        path = [bytes.fromhex(h) for h in p["path"]]
        root = root_from_path(leaf_hash(p["record"].encode()), seq - first, last - first + 1, path)
        if root is None or root.hex() != checkpoint["root"]:
            fail(f"record {seq}: the audit path does not lead to the signed root")
        proven.append({"seq": seq, "event": record["event"], "target": record.get("target"),
                       "checkpoint": last})
    print(json.dumps({"submission_id": doc["submission_id"], "records": proven}))


if __name__ == "__main__":
    main()
