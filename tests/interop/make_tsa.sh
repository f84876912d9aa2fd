#!/bin/sh
# A test time-stamping authority (RFC 3161) for `openssl ts -reply`, made in DIR:
# ca.key/ca.pem (its root, EC P-256), tsa.key/tsa.pem (RSA 2048, EKU
# timeStamping, critical), tsa.cnf and serial. Used by the SDK's and the
# daemon's time-stamp tests. Test keys only: made fresh each run, never kept.
#
#   tests/interop/make_tsa.sh DIR
set -eu
cd "$1"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj "/CN=test TSA root" -days 30 -out ca.pem
openssl req -new -newkey rsa:2048 -nodes -keyout tsa.key -subj "/CN=test TSA" -out tsa.csr 2>/dev/null
printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = critical, timeStamping\n' > tsa.ext
openssl x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -days 30 -extfile tsa.ext -out tsa.pem 2>/dev/null
cat > tsa.cnf <<'CNF'
[ tsa ]
default_tsa = t
[ t ]
serial = ./serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
CNF
echo 01 > serial
