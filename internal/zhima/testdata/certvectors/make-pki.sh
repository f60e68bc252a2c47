#!/bin/sh
# make-pki.sh: makes the throwaway test PKI of this directory with openssl.
# TEST ONLY: every key here is public; never trust these certificates.
#
#   sh make-pki.sh          re-issue the certificates with the keys already here
#   sh make-pki.sh -fresh   make new keys too (every SN and vector changes)
#
# Keys that exist are kept, so re-running re-issues the same certificates:
# the RSA-signed ones byte for byte (PKCS#1 v1.5 is deterministic), the EC
# and SM2 roots with a new (random) signature but the same SN. Serials and
# validity (2025-01-01 .. 2045-01-01) are fixed below. Run `node gen.js`
# afterwards. Needs OpenSSL 3 (SM2 and SM3).
set -eu
cd "$(dirname "$0")"
[ "${1:-}" = -fresh ] && rm -f ./*.key

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/openssl.cnf" <<EOF
[ req ]
distinguished_name = req_dn
string_mask = utf8only
utf8 = yes
[ req_dn ]
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
policy = any_dn
unique_subject = no
email_in_dn = yes
[ any_dn ]
commonName = supplied
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
: >"$work/index.txt"

key() { # key FILE genpkey-args...: make FILE unless it exists
  f=$1
  shift
  [ -f "$f" ] || openssl genpkey -quiet "$@" -out "$f"
}
key rsa_root_ca.key -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa_root_ca2.key -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa_class2_ca.key -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key alipay_leaf.key -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key ec_root_ca.key -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key sm2_root_ca.key -algorithm SM2

# issue OUT SUBJECT KEY SERIAL_HEX DIGEST EXT [ISSUER_CERT ISSUER_KEY]
# Without an issuer the certificate is self-signed. The subject is kept as
# written (-preserveDN), UTF-8 strings, "+" joining a multi-valued RDN.
issue() {
  out=$1 subj=$2 k=$3 serial=$4 md=$5 ext=$6
  echo "$serial" >"$work/serial"
  openssl req -config "$work/openssl.cnf" -new -utf8 -key "$k" -subj "$subj" -out "$work/req.csr"
  if [ $# -gt 6 ]; then
    signer="-cert $7 -keyfile $8"
  else
    signer="-selfsign -keyfile $k"
  fi
  sigopt=
  [ "$md" = sm3 ] && sigopt="-sigopt distid:1234567812345678"
  # shellcheck disable=SC2086 # signer and sigopt are word lists
  openssl ca -config "$work/openssl.cnf" -batch -notext -utf8 -preserveDN \
    -startdate 20250101000000Z -enddate 20450101000000Z -md "$md" -extensions "$ext" \
    $signer $sigopt -in "$work/req.csr" -out "$out" 2>"$work/ca.log" || { cat "$work/ca.log" >&2; exit 1; }
}

# Serials: 20 bytes (one with the top bit set, so DER prepends 00; one with
# a leading 0x05) and one of 3 bytes, so hex-vs-decimal and short serials matter.
issue "$work/rsa_root.crt" "/C=CN/O=蚂蚁测试/OU=Certification Authority/CN=Zhimaq Test RSA Root CA" \
  rsa_root_ca.key 3A7F1C09D2E4B6815F0C2D3E4A5B6C7D8E9F0A1B sha256 v3_ca
issue "$work/rsa_root2.crt" "/C=CN/L=杭州/O=Zhimaq Test/OU=Root CA 2+CN=Zhimaq Test RSA Root CA 2" \
  rsa_root_ca2.key 0F4240 sha512 v3_ca
issue "$work/ec_root.crt" "/C=CN/O=Zhimaq Test/CN=Zhimaq Test EC Root CA" \
  ec_root_ca.key 6E1F2A3B4C5D6E7F80912A3B4C5D6E7F8091A2B3 sha256 v3_ca
issue "$work/sm2_root.crt" "/C=CN/O=蚂蚁测试/CN=Zhimaq Test SM2 Root CA" \
  sm2_root_ca.key 4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F70 sm3 v3_ca
# The intermediate's name is the issuer of both leaves, so it carries every
# kind of attribute the SN writes: short-named ones, UTF-8 text, E, and
# serialNumber (2.5.4.5), which has no short name.
issue "$work/class2.crt" "/C=CN/ST=浙江省/L=杭州/O=蚂蚁测试/OU=Certification Authority/CN=Zhimaq Test Class 2 CA/serialNumber=91330100TEST00001X/emailAddress=ca@zhimaq.example" \
  rsa_class2_ca.key 9C0E51A2B3C4D5E6F708192A3B4C5D6E7F8091A2 sha256 v3_ca "$work/rsa_root.crt" rsa_root_ca.key
issue "$work/alipay.crt" "/C=CN/O=蚂蚁测试/OU=Alipay/CN=Zhimaq Test Alipay Public Key (RSA2)" \
  alipay_leaf.key 05D2C3B4A5968778695A4B3C2D1E0F1021324354 sha256 v3_leaf "$work/class2.crt" rsa_class2_ca.key
# The app certificate is for the key of ../sdkvectors (app_public.pem).
issue "$work/app.crt" "/C=CN/O=zhimaq test app/OU=Alipay/CN=2021000000000001" \
  ../sdkvectors/app_private_pkcs1.pem 7B2E4F6081A3C5E7092B4D6F8102A3B4C5D6E7F8 sha256 v3_leaf "$work/class2.crt" rsa_class2_ca.key

# Root file: a non-RSA root first and between the RSA ones.
cat "$work/ec_root.crt" "$work/rsa_root.crt" "$work/sm2_root.crt" "$work/rsa_root2.crt" >alipayRootCert.crt
# Alipay's public key certificate file: the leaf, then its issuer.
cat "$work/alipay.crt" "$work/class2.crt" >alipayCertPublicKey_RSA2.crt
cp "$work/app.crt" appCertPublicKey_2021000000000001.crt

# The app certificate must hold exactly the key of app_public.pem.
[ "$(openssl x509 -in appCertPublicKey_2021000000000001.crt -noout -pubkey)" = "$(cat ../sdkvectors/app_public.pem)" ] ||
  { echo "app certificate key differs from ../sdkvectors/app_public.pem" >&2; exit 1; }
openssl verify -CAfile "$work/rsa_root.crt" -untrusted "$work/class2.crt" \
  "$work/alipay.crt" "$work/app.crt" >/dev/null
echo "made alipayRootCert.crt alipayCertPublicKey_RSA2.crt appCertPublicKey_2021000000000001.crt"
