package zhima

import (
	"crypto/md5"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// CertSN is the serial Alipay gives the first certificate of a PEM file,
// as sent in app_cert_sn and answered in alipay_cert_sn: the lowercase hex
// MD5 of the issuer's attributes in reverse order, written shortName=value
// and joined by ",", followed by the certificate's serial number in decimal.
func CertSN(pemText []byte) (string, error) {
	certs, err := pemCerts(pemText)
	if err != nil {
		return "", err
	}
	return certs[0].sn, nil
}

// RootCertSN is alipay_root_cert_sn: the SN of every certificate of the
// Alipay root file signed with RSA, joined by "_" in file order. Roots of
// other algorithms (EC, SM2) are left out, as Alipay's SDKs leave them out.
func RootCertSN(pemText []byte) (string, error) {
	certs, err := pemCerts(pemText)
	if err != nil {
		return "", err
	}
	var sns []string
	for _, c := range certs {
		if c.rsaSigned {
			sns = append(sns, c.sn)
		}
	}
	if len(sns) == 0 {
		return "", errors.New("zhima: the root file holds no RSA-signed certificate")
	}
	return strings.Join(sns, "_"), nil
}

// snCert is one certificate of a PEM file as the SN rules see it.
type snCert struct {
	der       []byte
	sn        string
	rsaSigned bool
}

// pemCerts reads every CERTIFICATE block of a PEM file. It parses only what
// the SN needs, so a certificate Go's x509 cannot load (an SM2 root) still
// has its SN.
func pemCerts(pemText []byte) ([]snCert, error) {
	var out []snCert
	rest := pemText
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("zhima: certificate file holds a %q block; want CERTIFICATE blocks only", block.Type)
		}
		sn, rsaSigned, err := certSN(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("zhima: certificate %d of the file: %w", len(out)+1, err)
		}
		out = append(out, snCert{der: block.Bytes, sn: sn, rsaSigned: rsaSigned})
	}
	if len(out) == 0 {
		return nil, errors.New("zhima: no PEM CERTIFICATE block found")
	}
	return out, nil
}

// certificate is the outline of an X.509 certificate: what the SN reads.
type certificate struct {
	TBS struct {
		Version         int `asn1:"optional,explicit,default:0,tag:0"`
		Serial          *big.Int
		Signature       pkix.AlgorithmIdentifier
		Issuer          asn1.RawValue
		Validity        asn1.RawValue
		Subject         asn1.RawValue
		PublicKey       asn1.RawValue
		IssuerUniqueID  asn1.RawValue `asn1:"optional,tag:1"`
		SubjectUniqueID asn1.RawValue `asn1:"optional,tag:2"`
		Extensions      asn1.RawValue `asn1:"optional,explicit,tag:3"`
	}
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
}

// oidRSASignature is the arc of every PKCS#1 signature algorithm.
var oidRSASignature = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1}

func certSN(der []byte) (sn string, rsaSigned bool, err error) {
	var c certificate
	if rest, err := asn1.Unmarshal(der, &c); err != nil {
		return "", false, fmt.Errorf("not an X.509 certificate: %v", err)
	} else if len(rest) > 0 {
		return "", false, errors.New("not an X.509 certificate: trailing data")
	}
	var issuer pkix.RDNSequence
	if _, err := asn1.Unmarshal(c.TBS.Issuer.FullBytes, &issuer); err != nil {
		return "", false, fmt.Errorf("issuer name: %v", err)
	}
	var attrs []string
	for i := len(issuer) - 1; i >= 0; i-- {
		rdn := issuer[i]
		for j := len(rdn) - 1; j >= 0; j-- {
			attrs = append(attrs, shortName(rdn[j].Type)+"="+fmt.Sprint(rdn[j].Value))
		}
	}
	if c.TBS.Serial == nil {
		return "", false, errors.New("no serial number")
	}
	sum := md5.Sum([]byte(strings.Join(attrs, ",") + c.TBS.Serial.String()))
	oid := c.SignatureAlgorithm.Algorithm
	rsaSigned = len(oid) > len(oidRSASignature) && oid[:len(oidRSASignature)].Equal(oidRSASignature)
	return hex.EncodeToString(sum[:]), rsaSigned, nil
}

// shortNames are the attribute names the SN is written with: the whole
// table of @fidm/x509, the parser of Alipay's Node SDK (alipay-sdk 4.14.0).
var shortNames = map[string]string{
	"2.5.4.3":              "CN",
	"2.5.4.6":              "C",
	"2.5.4.7":              "L",
	"2.5.4.8":              "ST",
	"2.5.4.10":             "O",
	"2.5.4.11":             "OU",
	"1.2.840.113549.1.9.1": "E",
}

// shortName is "" for any other attribute (serialNumber 2.5.4.5 included),
// which the SN then writes as "=value", as the SDK does.
func shortName(oid asn1.ObjectIdentifier) string {
	return shortNames[oid.String()]
}
