package zhima

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// certVectors are certificate SNs, AES ciphertexts and certificate-mode
// requests and responses made by Alipay's Node SDK (testdata/certvectors/gen.js).
type certVectors struct {
	Certs struct {
		AppCert    certVector `json:"app_cert"`
		AlipayCert struct {
			certVector
			PublicKeyPEM string `json:"public_key_pem"`
		} `json:"alipay_cert"`
		RootCert struct {
			File  string `json:"file"`
			SN    string `json:"sn"`
			Certs []struct {
				certVector
				Index int `json:"index"`
			} `json:"certs"`
		} `json:"root_cert"`
	} `json:"certs"`
	AES struct {
		WrongKey string `json:"wrong_key"`
		Vectors  []struct {
			Name       string `json:"name"`
			Key        string `json:"key"`
			Plaintext  string `json:"plaintext"`
			Ciphertext string `json:"ciphertext"`
		} `json:"vectors"`
	} `json:"aes"`
	Requests []struct {
		Name           string            `json:"name"`
		SignType       SignType          `json:"sign_type"`
		PrivateKeyFile string            `json:"private_key_file"`
		AESKey         string            `json:"aes_key"`
		BizPlaintext   string            `json:"biz_content_plaintext"`
		Params         map[string]string `json:"params"`
		SigningString  string            `json:"signing_string"`
		Sign           string            `json:"sign"`
	} `json:"requests"`
	Responses []struct {
		Name          string `json:"name"`
		Method        string `json:"method"`
		Encrypted     bool   `json:"encrypted"`
		AESKey        string `json:"aes_key"`
		Body          string `json:"body"`
		AlipayCertSN  string `json:"alipay_cert_sn"`
		NodePlaintext string `json:"node_plaintext"`
		SignedContent string `json:"signed_content"`
		Sign          string `json:"sign"`
	} `json:"responses"`
}

type certVector struct {
	File    string `json:"file"`
	SN      string `json:"sn"`
	SNInput string `json:"sn_input"` // what the SDK hashed, for failure messages
}

func readCertVectorFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "certvectors", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func loadCertVectors(t *testing.T) *certVectors {
	t.Helper()
	var v certVectors
	if err := json.Unmarshal(readCertVectorFile(t, "vectors.json"), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.AES.Vectors) < 12 || len(v.Requests) < 2 || len(v.Responses) < 2 || len(v.Certs.RootCert.Certs) < 4 {
		t.Fatal("vectors.json is missing vectors")
	}
	return &v
}

func mustAESKey(t *testing.T, text string) *AESKey {
	t.Helper()
	k, err := ParseAESKey(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCertSNMatchesOfficialSDK(t *testing.T) {
	v := loadCertVectors(t)
	for _, c := range []certVector{v.Certs.AppCert, v.Certs.AlipayCert.certVector} {
		got, err := CertSN(readCertVectorFile(t, c.File))
		if err != nil {
			t.Fatalf("%s: %v", c.File, err)
		}
		if got != c.SN {
			t.Errorf("%s: CertSN = %s, SDK says %s (md5 of %q)", c.File, got, c.SN, c.SNInput)
		}
	}

	root := readCertVectorFile(t, v.Certs.RootCert.File)
	got, err := RootCertSN(root)
	if err != nil {
		t.Fatal(err)
	}
	if got != v.Certs.RootCert.SN {
		t.Errorf("RootCertSN = %s, SDK says %s", got, v.Certs.RootCert.SN)
	}
	// Each root on its own, EC and SM2 ones included, has the SDK's SN.
	var blocks [][]byte
	for rest := root; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, pem.EncodeToMemory(b))
	}
	for _, c := range v.Certs.RootCert.Certs {
		got, err := CertSN(blocks[c.Index])
		if err != nil {
			t.Fatalf("root %d: %v", c.Index, err)
		}
		if got != c.SN {
			t.Errorf("root %d: CertSN = %s, SDK says %s (md5 of %q)", c.Index, got, c.SN, c.SNInput)
		}
	}
}

func TestAlipayCertKeyMatchesOfficialSDK(t *testing.T) {
	v := loadCertVectors(t)
	sdkKey, err := ParsePublicKey(v.Certs.AlipayCert.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(readCertVectorFile(t, v.Certs.AlipayCert.File))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !sdkKey.Equal(leaf.PublicKey) {
		t.Fatal("the SDK's Alipay public key is not the first certificate's key")
	}
}

func TestAESMatchesOfficialSDK(t *testing.T) {
	v := loadCertVectors(t)
	wrong := mustAESKey(t, v.AES.WrongKey)
	for _, c := range v.AES.Vectors {
		t.Run(c.Name, func(t *testing.T) {
			k := mustAESKey(t, c.Key)
			if got := k.Encrypt([]byte(c.Plaintext)); got != c.Ciphertext {
				t.Errorf("Encrypt = %s, SDK says %s", got, c.Ciphertext)
			}
			plain, err := k.Decrypt(c.Ciphertext)
			if err != nil || string(plain) != c.Plaintext {
				t.Errorf("Decrypt = %q, %v; want %q", plain, err, c.Plaintext)
			}
			// gen.js checks this wrong key gives bad padding on every vector.
			if plain, err := wrong.Decrypt(c.Ciphertext); err == nil {
				t.Errorf("Decrypt with the wrong key gave %q, want an error", plain)
			}
		})
	}
}

func TestAESErrors(t *testing.T) {
	v := loadCertVectors(t)
	k := mustAESKey(t, v.AES.Vectors[0].Key)
	for _, text := range []string{"not base64!", "YWJj", ""} { // "YWJj" is 3 bytes, not whole blocks
		if _, err := k.Decrypt(text); err == nil {
			t.Errorf("Decrypt(%q) succeeded", text)
		}
	}
	if _, err := ParseAESKey("!!!not base64!!!"); err == nil {
		t.Error("ParseAESKey accepted non-base64 text")
	}
	const key15 = "c2VjcmV0LWtleS0xNWJ5" // base64 of the 15 bytes "secret-key-15by"
	_, err := ParseAESKey(key15)
	if err == nil {
		t.Fatal("ParseAESKey accepted a 15-byte key")
	}
	if strings.Contains(err.Error(), key15) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error quotes the key: %v", err)
	}
}

func TestCertModeRequestMatchesOfficialSDK(t *testing.T) {
	v := loadCertVectors(t)
	appSN, err := CertSN(readCertVectorFile(t, v.Certs.AppCert.File))
	if err != nil {
		t.Fatal(err)
	}
	rootSN, err := RootCertSN(readCertVectorFile(t, v.Certs.RootCert.File))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Requests {
		t.Run(r.Name, func(t *testing.T) {
			if r.Params["app_cert_sn"] != appSN || r.Params["alipay_root_cert_sn"] != rootSN {
				t.Errorf("the SDK sent app_cert_sn=%s alipay_root_cert_sn=%s; we compute %s and %s",
					r.Params["app_cert_sn"], r.Params["alipay_root_cert_sn"], appSN, rootSN)
			}
			if r.AESKey != "" {
				if r.Params["encrypt_type"] != "AES" {
					t.Errorf("encrypt_type = %q", r.Params["encrypt_type"])
				}
				if got := mustAESKey(t, r.AESKey).Encrypt([]byte(r.BizPlaintext)); got != r.Params["biz_content"] {
					t.Errorf("encrypted biz_content\n got %s\nwant %s", got, r.Params["biz_content"])
				}
			}
			if got := SigningString(r.Params); got != r.SigningString {
				t.Fatalf("signing string\n got %s\nwant %s", got, r.SigningString)
			}
			key, err := ParsePrivateKey(string(readCertVectorFile(t, r.PrivateKeyFile)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Sign(key, r.SignType, []byte(r.SigningString))
			if err != nil {
				t.Fatal(err)
			}
			if got != r.Sign {
				t.Errorf("signature differs from the SDK's\n got %s\nwant %s", got, r.Sign)
			}
		})
	}
}

func TestCertModeResponseVectors(t *testing.T) {
	v := loadCertVectors(t)
	alipayKey, err := ParsePublicKey(v.Certs.AlipayCert.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Responses {
		t.Run(r.Name, func(t *testing.T) {
			a, err := ExtractNode([]byte(r.Body), r.Method)
			if err != nil {
				t.Fatal(err)
			}
			if string(a.Node) != r.SignedContent || a.Encrypted != r.Encrypted {
				t.Errorf("node = %s (encrypted %v), want %s", a.Node, a.Encrypted, r.SignedContent)
			}
			if a.Sign != r.Sign || a.CertSN != r.AlipayCertSN || a.CertSN != v.Certs.AlipayCert.SN {
				t.Errorf("sign/alipay_cert_sn not extracted: %q %q", a.Sign, a.CertSN)
			}
			if err := Verify(alipayKey, RSA2, a.Node, a.Sign); err != nil {
				t.Errorf("signature over the node as it stands: %v", err)
			}
			if !r.Encrypted {
				return
			}
			var text string
			if err := json.Unmarshal(a.Node, &text); err != nil {
				t.Fatal(err)
			}
			if err := Verify(alipayKey, RSA2, []byte(text), a.Sign); err == nil {
				t.Error("the signature also verifies over the unquoted text")
			}
			plain, err := mustAESKey(t, r.AESKey).Decrypt(text)
			if err != nil || string(plain) != r.NodePlaintext {
				t.Errorf("Decrypt = %q, %v; want %q", plain, err, r.NodePlaintext)
			}
		})
	}
}
