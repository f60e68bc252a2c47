package seal

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testKey returns a fixed 32-byte key whose standard base64 holds '+' and
// '/', so that its URL form differs.
func testKey(tb testing.TB, seed byte) []byte {
	tb.Helper()
	key := []byte{0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff}
	for i := len(key); i < KeySize; i++ {
		key = append(key, seed+byte(i*37))
	}
	return key
}

// std, rawStd, url and rawURL spell a key in the four accepted ways.
func std(b []byte) string    { return base64.StdEncoding.EncodeToString(b) }
func rawStd(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
func url(b []byte) string    { return base64.URLEncoding.EncodeToString(b) }
func rawURL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// mustParse parses s or fails the test.
func mustParse(tb testing.TB, s string) *Keyring {
	tb.Helper()
	k, err := Parse(s)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return k
}

// assertNoSecret fails when text holds secret or any 8-character run of it.
func assertNoSecret(tb testing.TB, text, secret string) {
	tb.Helper()
	const run = 8
	if secret == "" {
		return
	}
	if strings.Contains(text, secret) {
		tb.Fatalf("%q holds the secret", text)
	}
	for i := 0; i+run <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+run]) {
			tb.Fatalf("%q holds part of the secret (%q)", text, secret[i:i+run])
		}
	}
}

// assertNoKeyMaterial fails when text shows key in any usual spelling.
func assertNoKeyMaterial(tb testing.TB, text string, key []byte) {
	tb.Helper()
	for _, spelled := range []string{rawStd(key), rawURL(key), hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)), string(key)} {
		assertNoSecret(tb, text, spelled)
	}
	assertNoSecret(tb, text, fmt.Sprint(key)) // [251 239 190 ...]
}

func TestParse(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	tests := []struct {
		name      string
		in        string
		plaintext bool
		ids       []string
	}{
		{"standard base64 with padding", "k1:" + std(k1), false, []string{"k1"}},
		{"standard base64 without padding", "k1:" + rawStd(k1), false, []string{"k1"}},
		{"URL base64 with padding", "k1:" + url(k1), false, []string{"k1"}},
		{"URL base64 without padding", "k1:" + rawURL(k1), false, []string{"k1"}},
		{"spaces and trailing newline tolerated", "  k2026 : " + std(k2) + " ,\tk2025:" + rawURL(k1) + " \n", false, []string{"k2026", "k2025"}},
		{"first key listed seals", "new_key-2:" + std(k2) + ",old:" + std(k1), false, []string{"new_key-2", "old"}},
		{"id of 32 characters accepted", strings.Repeat("a", 32) + ":" + std(k1), false, []string{strings.Repeat("a", 32)}},
		{"plaintext opts out", "plaintext", true, nil},
		{"plaintext with newline opts out", " plaintext\n", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mustParse(t, tt.in)
			if got := k.Plaintext(); got != tt.plaintext {
				t.Fatalf("Plaintext() = %v, want %v", got, tt.plaintext)
			}
			if got := fmt.Sprint(k.IDs()); got != fmt.Sprint(tt.ids) {
				t.Fatalf("IDs() = %v, want %v", got, tt.ids)
			}
			want := ""
			if len(tt.ids) > 0 {
				want = tt.ids[0]
			}
			if got := k.SealingKeyID(); got != want {
				t.Fatalf("SealingKeyID() = %q, want %q", got, want)
			}
		})
	}
}

func TestParseSpellingsOpenEachOther(t *testing.T) {
	key := testKey(t, 9)
	sealed, err := mustParse(t, "k:"+std(key)).Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, spelled := range []string{rawStd(key), url(key), rawURL(key)} {
		if _, err := mustParse(t, "k:"+spelled).Open(sealed, nil); err != nil {
			t.Fatalf("the same key spelled %q does not open: %v", spelled, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	short, long := k1[:16], append(append([]byte{}, k1...), 7)
	bad := "!" + std(k1)[1:]
	mixed := strings.Replace(std(k1), "/", "_", 1) // '+' and '_' together
	tests := []struct {
		name    string
		in      string
		secret  string // key text in the input that the error must not show
		entry   int
		id      string
		problem string
	}{
		{"empty value fails", "", "", 0, "", "empty value"},
		{"blank value fails", " \n", "", 0, "", "empty value"},
		{"empty trailing entry fails", "k1:" + std(k1) + ",", std(k1), 2, "", "empty entry"},
		{"empty leading entry fails", " ,k1:" + std(k1), std(k1), 1, "", "empty entry"},
		{"bare key without ':' fails", std(k1), std(k1), 1, "", "no ':'"},
		{"second entry without ':' fails", "k1:" + std(k1) + "," + std(k2), std(k2), 2, "", "no ':'"},
		{"empty id fails", ":" + std(k1), std(k1), 1, "", "empty id"},
		{"blank id fails", "  :" + std(k1), std(k1), 1, "", "empty id"},
		{"duplicate id fails", "k1:" + std(k1) + ",k1:" + std(k2), std(k2), 2, "k1", "duplicate id (also entry 1)"},
		{"id with a dot fails", "k.1:" + std(k1), std(k1), 1, "", "characters other than"},
		{"id with a space fails", "k 1:" + std(k1), std(k1), 1, "", "characters other than"},
		{"non-ASCII id fails", "ключ:" + std(k1), std(k1), 1, "", "characters other than"},
		{"id of 33 characters fails", strings.Repeat("a", 33) + ":" + std(k1), std(k1), 1, "", "longer than 32"},
		{"key and id swapped fails without showing the key", rawURL(k1) + ":k1", rawURL(k1), 1, "", "longer than 32"},
		{"standard base64 as id fails without showing it", rawStd(short)[:20] + ":k1", rawStd(short)[:20], 1, "", "characters other than"},
		{"empty key fails", "k1:", "", 1, "k1", "empty key"},
		{"blank key fails", "k1:  ", "", 1, "k1", "empty key"},
		{"bad base64 fails", "k1:" + bad, bad, 1, "k1", "not valid base64"},
		{"mixed standard and URL alphabets fail", "k1:" + mixed, mixed, 1, "k1", "not valid base64"},
		{"wrong padding fails", "k1:" + rawStd(k1) + "==", rawStd(k1), 1, "k1", "not valid base64"},
		{"key split over lines fails", "k1:" + std(k1)[:20] + "\n" + std(k1)[20:], std(k1)[20:], 1, "k1", "not valid base64"},
		{"16-byte key fails", "k1:" + std(short), std(short), 1, "k1", "key is 16 bytes, want 32"},
		{"33-byte key fails", "k1:" + std(long), std(long), 1, "k1", "key is 33 bytes, want 32"},
		{"bad second key fails naming its id", "k1:" + std(k1) + ",k0:" + std(short), std(short), 2, "k0", "key is 16 bytes"},
		{"PLAINTEXT in capitals fails", "PLAINTEXT", "", 1, "", "no ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse = %v, want an error", k)
			}
			if k != nil {
				t.Fatalf("Parse returned a keyring with its error: %v", k)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			if pe.Entry != tt.entry || pe.ID != tt.id || !strings.Contains(pe.Problem, tt.problem) {
				t.Fatalf("got entry %d id %q problem %q, want entry %d id %q problem containing %q",
					pe.Entry, pe.ID, pe.Problem, tt.entry, tt.id, tt.problem)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "seal: data keys: ") {
				t.Fatalf("error %q lacks the operation prefix", msg)
			}
			if tt.entry > 0 && !strings.Contains(msg, fmt.Sprintf("entry %d", tt.entry)) {
				t.Fatalf("error %q does not name entry %d", msg, tt.entry)
			}
			assertNoSecret(t, msg, tt.secret)
			for _, key := range [][]byte{k1, k2, short, long} {
				assertNoKeyMaterial(t, msg, key)
			}
		})
	}
}

func TestKeyringPrinting(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	k := mustParse(t, "k2026:"+std(k2)+",k2025:"+std(k1))
	type holder struct {
		Keys    *Keyring
		private *Keyring
	}
	tests := []struct {
		name string
		got  string
		want string // "" when only the absence of key material is checked
	}{
		{"String shows ids", k.String(), "seal.Keyring{ids: k2026,k2025}"},
		{"GoString shows ids", k.GoString(), "&seal.Keyring{ids: k2026,k2025}"},
		{"%v shows ids", fmt.Sprintf("%v", k), "seal.Keyring{ids: k2026,k2025}"},
		{"%+v shows ids", fmt.Sprintf("%+v", k), "seal.Keyring{ids: k2026,k2025}"},
		{"%#v shows ids", fmt.Sprintf("%#v", k), "&seal.Keyring{ids: k2026,k2025}"},
		{"%s shows ids", fmt.Sprintf("%s", k), "seal.Keyring{ids: k2026,k2025}"},
		{"%x shows ids", fmt.Sprintf("%x", k), "seal.Keyring{ids: k2026,k2025}"},
		{"%d shows ids", fmt.Sprintf("%d", k), "seal.Keyring{ids: k2026,k2025}"},
		{"%v in a struct shows ids", fmt.Sprintf("%+v", holder{k, k}), ""},
		{"%#v in a struct shows ids", fmt.Sprintf("%#v", holder{k, k}), ""},
		{"%v in a slice shows ids", fmt.Sprintf("%v", []*Keyring{k}), "[seal.Keyring{ids: k2026,k2025}]"},
		{"%+v of a copied value hides keys", fmt.Sprintf("%+v", *k), ""},
		{"%#v of a copied value hides keys", fmt.Sprintf("%#v", *k), ""},
		{"plaintext String", mustParse(t, "plaintext").String(), "seal.Keyring{plaintext}"},
		{"nil String", (*Keyring)(nil).String(), "seal.Keyring{plaintext}"},
		{"nil %v", fmt.Sprintf("%v", (*Keyring)(nil)), "seal.Keyring{plaintext}"},
		{"nil %#v", fmt.Sprintf("%#v", (*Keyring)(nil)), "(*seal.Keyring)(nil)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want != "" && tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
			assertNoKeyMaterial(t, tt.got, k1)
			assertNoKeyMaterial(t, tt.got, k2)
		})
	}
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr bool
	}{
		{"valid id parses", "k2026", false},
		{"id of 32 characters parses", strings.Repeat("z", 32), false},
		{"empty id fails", "", true},
		{"id with a colon fails", "k:1", true},
		{"id of 33 characters fails", strings.Repeat("z", 33), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Generate(tt.id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Generate(%q) = %q, want an error", tt.id, v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := mustParse(t, v)
			if k.SealingKeyID() != tt.id || k.Plaintext() {
				t.Fatalf("Generate(%q) parses to %v", tt.id, k)
			}
		})
	}
	t.Run("two keys differ", func(t *testing.T) {
		a, _ := Generate("k")
		b, _ := Generate("k")
		if a == b {
			t.Fatal("Generate returned the same key twice")
		}
	})
}

func TestDigestsAreKeyedAndSurviveRotation(t *testing.T) {
	oldKeys, err := Generate("old")
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := Generate("new")
	before, _ := Parse(oldKeys)
	after, _ := Parse(newKey + "," + oldKeys)
	msg := []byte("fingerprint of a job")
	d1, d2 := before.Digests(msg), after.Digests(msg)
	if len(d1) != 1 || len(d2) != 2 || d2[1] != d1[0] || d2[0] == d1[0] {
		t.Fatalf("digests before %v after %v: want the old key's digest second after a rotation", d1, d2)
	}
	if again := before.Digests(msg); again[0] != d1[0] {
		t.Fatal("digests are not deterministic")
	}
	if other := before.Digests([]byte("another job")); other[0] == d1[0] {
		t.Fatal("different messages gave the same digest")
	}
	plain, _ := Parse(PlaintextValue)
	if plain.Digests(msg) != nil {
		t.Fatal("a plaintext keyring made digests")
	}
}

// TestParseOncePerValue: the same value gives the same keyring, parsed
// once; another value gives another; an error is not kept.
func TestParseOncePerValue(t *testing.T) {
	v := "once:" + std(testKey(t, 7))
	a, b := mustParse(t, v), mustParse(t, v)
	if a != b {
		t.Error("the same DATA_KEYS value was parsed twice")
	}
	if c := mustParse(t, "other:"+std(testKey(t, 8))); c == a {
		t.Error("another value gave the same keyring")
	}
	for range 2 {
		if _, err := Parse("bad"); err == nil {
			t.Error(`Parse("bad") succeeded`)
		}
	}
}
