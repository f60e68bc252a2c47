// Package jsonl reads JSON Lines input, a job per line, without holding
// more than one line (and that bounded) in memory.
package jsonl

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Reader splits a batch file into lines without ever holding more than
// max+2 bytes of one line, however long the line is.
type Reader struct {
	r    *bufio.Reader
	max  int
	n    int // physical lines read so far
	last bool
}

// NewLineReader returns a LineReader that reads r in 64 KiB chunks; lines longer than max are cut.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next line without its "\n" or "\r\n" and its 1-based
// number. A line longer than max comes back cut to its first max+1 bytes,
// so that it is still recognisably too long while the rest of it has been
// read past and dropped. A UTF-8 byte-order mark that starts the input is
// removed. At the end of input it returns io.EOF; a last line without a
// line ending is returned first.
func (lr *Reader) Next() ([]byte, int, error) {
	if lr.last {
		return nil, lr.n, io.EOF
	}
	keep := lr.max + 2 // room for the content's max bytes, one more, and a '\r'
	var line []byte
	read := 0
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if len(line) < keep {
			line = append(line, chunk[:min(len(chunk), keep-len(line))]...)
		}
		read += len(chunk)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			lr.last = true
			if read == 0 {
				return nil, lr.n, io.EOF
			}
		} else if err != nil {
			return nil, lr.n, err
		}
		break
	}
	lr.n++
	if read > len(line) {
		// Cut: the line and its ending did not fit in max+2 bytes.
		return line[:lr.max+1], lr.n, nil
	}
	if lr.n == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > lr.max {
		return line[:lr.max+1], lr.n, nil
	}
	return line, lr.n, nil
}

// Blank reports whether line holds only whitespace.
func Blank(line []byte) bool {
	return len(bytes.TrimSpace(line)) == 0
}
