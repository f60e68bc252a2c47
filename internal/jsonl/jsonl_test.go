package jsonl

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLineReader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 25)
	tests := []struct {
		name  string
		input string
		want  []string // lines in order; a cut line is its first max+1 bytes
	}{
		{"empty", "", nil},
		{"no final newline", "a\nb", []string{"a", "b"}},
		{"final newline", "a\nb\n", []string{"a", "b"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"blank lines kept", "\n \n", []string{"", " "}},
		{"byte-order mark", "\xef\xbb\xbfa\n\xef\xbb\xbfb", []string{"a", "\xef\xbb\xbfb"}},
		{"exactly max", "0123456789\n0123456789\r\n0123456789", []string{"0123456789", "0123456789", "0123456789"}},
		{"max+1", "0123456789A\nok\n0123456789A\r\nok\n0123456789A", []string{"0123456789A", "ok", "0123456789A", "ok", "0123456789A"}},
		{"long lines cut and skipped", long + "\nok\n" + long, []string{"xxxxxxxxxxx", "ok", "xxxxxxxxxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A 16-byte buffer makes long lines arrive in pieces.
			lr := &Reader{r: bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tt.input)), 16), max: 10}
			var got []string
			for {
				line, n, err := lr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if n != len(got)+1 {
					t.Errorf("line %d numbered %d", len(got)+1, n)
				}
				got = append(got, string(line))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if _, _, err := lr.Next(); err != io.EOF {
				t.Errorf("after the end: %v, want EOF", err)
			}
		})
	}
}

func TestLineReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	lr := NewReader(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)), 10)
	if line, _, err := lr.Next(); string(line) != "a" || err != nil {
		t.Fatalf("first line %q, %v", line, err)
	}
	if _, _, err := lr.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
}
