package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
)

// bizContent is a 300-byte biz_content of the kind a job carries.
var bizContent = func() []byte {
	b := []byte(`{"transaction_id":"T20260101000000000000000000000001","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"110101199003071234","name":"张三","admittance_score":650,"mobile":"13800138000","biz_params":{"channel":"loan-batch","region":"CN"}}`)
	for len(b) < 300 {
		b = append(b, ' ')
	}
	return b[:300]
}()

// aadFor is the additional data callers bind: app_id|method|transaction_id.
func aadFor(txn string) []byte {
	return []byte("2021000000000000|zhima.credit.score.brief.get|" + txn)
}

// mustSeal seals or fails the test.
func mustSeal(tb testing.TB, k *Keyring, plaintext, aad []byte) string {
	tb.Helper()
	s, err := k.Seal(plaintext, aad)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return s
}

// body returns the base64url part of a sealed text, decoded.
func body(tb testing.TB, sealed string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(sealed[strings.LastIndexByte(sealed, '.')+1:])
	if err != nil {
		tb.Fatalf("body of %q: %v", sealed, err)
	}
	return b
}

// sealWithNonce seals as the format says, independently of Seal and with a
// chosen nonce: "zq1." + id + "." + base64url(nonce||ciphertext||tag).
func sealWithNonce(tb testing.TB, key []byte, id string, nonce, plaintext, aad []byte) string {
	tb.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	out := gcm.Seal(append([]byte{}, nonce...), nonce, plaintext, aad)
	return "zq1." + id + "." + base64.RawURLEncoding.EncodeToString(out)
}

func TestOpenIndependentlySealedText(t *testing.T) {
	key := testKey(t, 1)
	sealed := sealWithNonce(t, key, "k1", bytes.Repeat([]byte{7}, 12), bizContent, aadFor("T1"))
	got, err := mustParse(t, "k1:"+std(key)).Open(sealed, aadFor("T1"))
	if err != nil || !bytes.Equal(got, bizContent) {
		t.Fatalf("Open = %q, %v; want the biz_content", got, err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustParse(t, "k2026:"+std(testKey(t, 1)))
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"biz_content opens", bizContent, aadFor("T1")},
		{"empty plaintext opens", []byte{}, aadFor("T1")},
		{"nil aad opens", []byte("张三"), nil},
		{"binary face picture opens", bytes.Repeat([]byte{0xff, 0xd8, 0x00, 0x7f}, 4096), aadFor("T2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := mustSeal(t, k, tt.plaintext, tt.aad)
			if !IsSealed(sealed) || !strings.HasPrefix(sealed, "zq1.k2026.") {
				t.Fatalf("sealed text %q lacks the zq1.k2026. header", sealed)
			}
			if strings.ContainsAny(sealed, "=+/\"\\ \n") {
				t.Fatalf("sealed text %q is not plain base64url", sealed)
			}
			if got := len(body(t, sealed)); got != len(tt.plaintext)+12+16 {
				t.Fatalf("body is %d bytes, want %d", got, len(tt.plaintext)+28)
			}
			got, err := k.Open(sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestSealNoncesDiffer(t *testing.T) {
	k := mustParse(t, "k:"+std(testKey(t, 1)))
	a := mustSeal(t, k, bizContent, aadFor("T1"))
	b := mustSeal(t, k, bizContent, aadFor("T1"))
	if a == b {
		t.Fatal("two seals of the same plaintext are equal")
	}
	if bytes.Equal(body(t, a)[:12], body(t, b)[:12]) {
		t.Fatal("two seals share a nonce")
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := "old:"+std(testKey(t, 1)), "new:"+std(testKey(t, 2))
	before := mustParse(t, oldKey)
	sealedOld := mustSeal(t, before, bizContent, aadFor("T1"))

	rotated := mustParse(t, newKey+","+oldKey)
	if id := rotated.SealingKeyID(); id != "new" {
		t.Fatalf("SealingKeyID() = %q after prepending, want new", id)
	}
	sealedNew := mustSeal(t, rotated, bizContent, aadFor("T1"))
	if !strings.HasPrefix(sealedNew, "zq1.new.") {
		t.Fatalf("rotated keyring seals %q, want under new", sealedNew[:8])
	}
	dropped := mustParse(t, newKey)

	tests := []struct {
		name    string
		k       *Keyring
		sealed  string
		wantErr error
		wantID  string
	}{
		{"old text opens after a new key is prepended", rotated, sealedOld, nil, ""},
		{"new text opens with the rotated keyring", rotated, sealedNew, nil, ""},
		{"new text opens once the old key is dropped", dropped, sealedNew, nil, ""},
		{"old text fails unknown key once its key is dropped", dropped, sealedOld, ErrUnknownKey, "old"},
		{"new text fails unknown key before the rotation", before, sealedNew, ErrUnknownKey, "new"},
		{"plaintext keyring fails unknown key", mustParse(t, "plaintext"), sealedOld, ErrUnknownKey, "old"},
		{"nil keyring fails unknown key", nil, sealedOld, ErrUnknownKey, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.k.Open(tt.sealed, aadFor("T1"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				if !bytes.Equal(got, bizContent) {
					t.Fatalf("Open = %q, want the biz_content", got)
				}
				return
			}
			if want := `seal: unknown data key "` + tt.wantID + `"`; err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
}

func TestSealPlaintextKeyring(t *testing.T) {
	for name, k := range map[string]*Keyring{"plaintext keyring fails": mustParse(t, "plaintext"), "nil keyring fails": nil} {
		t.Run(name, func(t *testing.T) {
			if s, err := k.Seal(bizContent, nil); err == nil || s != "" {
				t.Fatalf("Seal = %q, %v; want an error", s, err)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	k := mustParse(t, "k1:"+std(testKey(t, 1)))
	aad := aadFor("T1")
	sealed := mustSeal(t, k, bizContent, aad)
	payload := sealed[len("zq1.k1."):]
	tests := []struct {
		name    string
		sealed  string
		aad     []byte
		wantErr error
	}{
		{"wrong aad fails corrupt", sealed, aadFor("T2"), ErrCorrupt},
		{"nil aad fails corrupt", sealed, nil, ErrCorrupt},
		{"empty text fails corrupt", "", aad, ErrCorrupt},
		{"plain JSON fails corrupt", string(bizContent), aad, ErrCorrupt},
		{"other version fails corrupt", "zq2" + sealed[3:], aad, ErrCorrupt},
		{"prefix alone fails corrupt", "zq1.", aad, ErrCorrupt},
		{"missing body fails corrupt", "zq1.k1", aad, ErrCorrupt},
		{"empty body fails corrupt", "zq1.k1.", aad, ErrCorrupt},
		{"empty id fails corrupt", "zq1.." + payload, aad, ErrCorrupt},
		{"malformed id fails corrupt", "zq1.k+1." + payload, aad, ErrCorrupt},
		{"id of 33 characters fails corrupt", "zq1." + strings.Repeat("k", 33) + "." + payload, aad, ErrCorrupt},
		{"body shorter than nonce and tag fails corrupt", "zq1.k1." + payload[:37], aad, ErrCorrupt},
		{"truncated body fails corrupt", sealed[:len(sealed)-1], aad, ErrCorrupt},
		{"truncated by 4 fails corrupt", sealed[:len(sealed)-4], aad, ErrCorrupt},
		{"appended character fails corrupt", sealed + "A", aad, ErrCorrupt},
		{"appended padding fails corrupt", sealed + "=", aad, ErrCorrupt},
		{"standard alphabet fails corrupt", "zq1.k1." + base64.RawStdEncoding.EncodeToString(body(t, sealed)), aad, ErrCorrupt},
		{"inserted newline fails corrupt", sealed[:20] + "\n" + sealed[20:], aad, ErrCorrupt},
		{"inserted CR fails corrupt", sealed[:20] + "\r" + sealed[20:], aad, ErrCorrupt},
		{"extra dot fails corrupt", sealed[:20] + "." + sealed[20:], aad, ErrCorrupt},
		{"other key id fails unknown key", "zq1.k2." + payload, aad, ErrUnknownKey},
	}
	for i := len("zq1.k1."); i < len(sealed); i++ {
		for _, mask := range []byte{0x01, 0x20} {
			b := []byte(sealed)
			b[i] ^= mask
			tests = append(tests, struct {
				name    string
				sealed  string
				aad     []byte
				wantErr error
			}{"flipped byte fails corrupt", string(b), aad, ErrCorrupt})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Open(tt.sealed, tt.aad)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open(%q) = %q, %v; want %v", tt.sealed, got, err, tt.wantErr)
			}
			if got != nil {
				t.Fatalf("Open returned %d bytes with its error", len(got))
			}
			assertNoSecret(t, err.Error(), payload)
			assertNoSecret(t, err.Error(), string(bizContent))
		})
	}
}

func TestSealOpenConcurrent(t *testing.T) {
	k := mustParse(t, "a:"+std(testKey(t, 1))+",b:"+std(testKey(t, 2)))
	old := mustSeal(t, mustParse(t, "b:"+std(testKey(t, 2))), bizContent, aadFor("old"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				aad := aadFor(string(rune('A'+g)) + string(rune('a'+i%26)))
				sealed, err := k.Seal(bizContent, aad)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := k.Open(sealed, aad); err != nil || !bytes.Equal(got, bizContent) {
					t.Errorf("Open = %v, %v", len(got), err)
					return
				}
				if _, err := k.Open(old, aadFor("old")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzOpen checks that Open never panics on arbitrary text and aad, fails
// only with ErrCorrupt or ErrUnknownKey without quoting the text, and opens
// nothing but Seal's own output: no other spelling of a sealed text passes.
func FuzzOpen(f *testing.F) {
	fuzzKey := testKey(f, 3)
	k := mustParse(f, "fuzz:"+std(fuzzKey)+",other:"+std(testKey(f, 4)))
	// Seeds use fixed nonces so that every fuzz worker process builds the
	// same texts, and Seal's own output joins them in this process only.
	valid := map[string]string{} // sealed text -> aad it was sealed with
	for i, pt := range [][]byte{nil, []byte("x"), bizContent} {
		for j, aad := range [][]byte{nil, aadFor("T1")} {
			s := sealWithNonce(f, fuzzKey, "fuzz", bytes.Repeat([]byte{byte(i*2 + j)}, 12), pt, aad)
			valid[s] = string(aad)
			f.Add(s, aad)
			f.Add(s, []byte("wrong"))
			f.Add(mustSeal(f, k, pt, aad), aad)
		}
	}
	for _, s := range []string{"", "zq1.", "zq1.fuzz.", "zq1.nope.AAAA", "zq1.fuzz.====", `{"cert_no":"1"}`, "zq1.fuzz." + strings.Repeat("A", 38)} {
		f.Add(s, []byte(nil))
	}
	f.Fuzz(func(t *testing.T, s string, aad []byte) {
		got, err := k.Open(s, aad)
		if err == nil {
			wantAAD, seed := valid[s]
			if seed && wantAAD != string(aad) {
				t.Fatalf("Open accepted %q with aad %q, sealed with %q", s, aad, wantAAD)
			}
			if !seed && !canonical(s) {
				t.Fatalf("Open accepted %q, which is not Seal's spelling", s)
			}
			if !IsSealed(s) {
				t.Fatalf("Open accepted %q, which IsSealed rejects", s)
			}
			return
		}
		if got != nil {
			t.Fatalf("Open returned bytes with error %v", err)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Open error %v is neither ErrCorrupt nor ErrUnknownKey", err)
		}
		if _, body, ok := strings.Cut(strings.TrimPrefix(s, prefix), "."); ok && len(body) >= 8 && strings.Contains(err.Error(), body) {
			t.Fatalf("error %q quotes the sealed body", err)
		}
	})
}

// canonical reports whether s is exactly how Seal spells its body.
func canonical(s string) bool {
	i := strings.LastIndexByte(s, '.')
	b, err := base64.RawURLEncoding.DecodeString(s[i+1:])
	return err == nil && s[:i+1]+base64.RawURLEncoding.EncodeToString(b) == s
}

// BenchmarkSealOpen measures sealing and opening a 300-byte biz_content, the
// per-job cost in a worker.
func BenchmarkSealOpen(b *testing.B) {
	k := mustParse(b, "k2026:"+std(testKey(b, 1))+",k2025:"+std(testKey(b, 2)))
	aad := aadFor("T20260101000000000000000000000001")
	sealed := mustSeal(b, k, bizContent, aad)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(bizContent)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Seal(bizContent, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(bizContent)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Open(sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal+open parallel", func(b *testing.B) {
		b.SetBytes(int64(len(bizContent)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s, err := k.Seal(bizContent, aad)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.Open(s, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
