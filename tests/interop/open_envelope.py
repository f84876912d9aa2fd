#!/usr/bin/env python3
"""Open an ozg-gateway envelope with an independent JOSE library (jwcrypto).

This is what a recipient does, written as plainly as possible so vendors can
copy it:

    python3 open_envelope.py ENVELOPE.json RECIPIENT.key CA.pem SEAL.pem [OUTDIR]

1. decrypt the manifest JWE with the recipient key -> a compact JWS (the seal);
2. verify the seal: its x5c leaf must be the gateway's seal certificate (SEAL.pem,
   as the gateway's operator publishes it) issued by the CA, the signature must
   verify with its key;
3. check the envelope's clear header against the sealed manifest;
4. decrypt every part (a JWE in the JSON serialization; compact in format 1)
   and check its size and SHA-512 against the manifest.

Exit status 0 and a JSON summary on success; non-zero with a message otherwise.
"""
import base64
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwe, jwk, jws


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def verify_chain(x5c, ca):
    """The seal's leaf must be signed by the CA (the demo PKI has no intermediates)."""
    leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
    if leaf.issuer != ca.subject:
        fail("seal certificate is not issued by the trusted CA")
    ca_key = ca.public_key()
    if isinstance(ca_key, ec.EllipticCurvePublicKey):
        ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    else:
        ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm)
    return leaf


def main():
    env_path, key_path, ca_path, seal_path = sys.argv[1:5]
    out_dir = sys.argv[5] if len(sys.argv) > 5 else None
    env = json.load(open(env_path))
    if env.get("version") not in (1, 2):
        fail(f"unsupported envelope version {env.get('version')}")
    key = jwk.JWK.from_pem(open(key_path, "rb").read())
    ca = x509.load_pem_x509_certificate(open(ca_path, "rb").read())
    allowed = ["RSA-OAEP-256", "ECDH-ES+A256KW", "A256GCM"]

    def decrypt(token, what):
        # Envelope format 2: a part is a JWE in the flattened JSON serialization
        # (its ciphertext shared with the submission's other targets); the
        # manifest, and every part of format 1, is a compact JWE.
        if isinstance(token, dict):
            token = json.dumps(token)
        t = jwe.JWE(algs=allowed)
        try:
            t.deserialize(token, key=key)
        except Exception as e:  # noqa: BLE001 - report any failure by name
            fail(f"{what}: cannot decrypt ({e})")
        return t.payload

    sealed = decrypt(env["manifest"], "manifest").decode()
    seal = jws.JWS()
    seal.deserialize(sealed)
    header = seal.jose_header
    if header.get("typ") != "ozg-manifest":
        fail("manifest: wrong typ")
    leaf = verify_chain(header["x5c"], ca)
    seal_cert = x509.load_pem_x509_certificate(open(seal_path, "rb").read())
    if leaf.public_bytes(Encoding.DER) != seal_cert.public_bytes(Encoding.DER):
        fail("manifest: sealed by another certificate than the gateway's seal")
    try:
        seal.verify(jwk.JWK.from_pyca(leaf.public_key()), alg=header["alg"])
    except Exception as e:  # noqa: BLE001
        fail(f"manifest: seal does not verify ({e})")
    manifest = json.loads(seal.payload)

    for field in ("submission_id", "sender", "leistung", "destination"):
        if env[field] != manifest[field]:
            fail(f"envelope header {field} does not match the sealed manifest")

    jwes = {p["id"]: p["jwe"] for p in env["parts"]}
    if set(jwes) != {p["id"] for p in manifest["parts"]}:
        fail("the envelope's parts differ from the sealed manifest's")
    opened = []
    for part in manifest["parts"]:
        data = decrypt(jwes[part["id"]], f"part {part['id']}")
        if len(data) != part["size"]:
            fail(f"part {part['id']}: size mismatch")
        if hashlib.sha512(data).hexdigest() != part["sha512"]:
            fail(f"part {part['id']}: SHA-512 mismatch")
        if out_dir:
            name = part.get("filename") or part["id"]
            name = name.replace("/", "_").replace("\\", "_").lstrip(".") or part["id"]
            open(f"{out_dir}/{name}", "wb").write(data)
        opened.append({"id": part["id"], "size": part["size"], "media_type": part["media_type"]})

    jwe_header = json.loads(base64.urlsafe_b64decode(env["manifest"].split(".")[0] + "=="))
    summary = {"submission_id": manifest["submission_id"], "sender": manifest["sender"],
               "seal_alg": header["alg"], "key_alg": jwe_header["alg"], "parts": opened}
    # A reply names the submission it answers and its kind.
    for field in ("in_reply_to", "reply_type"):
        if field in manifest:
            summary[field] = manifest[field]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
