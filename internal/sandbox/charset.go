package sandbox

import (
	"strings"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// charset is the text encoding of one exchange: the request's form values,
// the bytes its signature covers, and the reply.
type charset string

const (
	charsetUTF8 charset = "utf-8"
	charsetGBK  charset = "GBK"
)

// parseCharset reads the charset parameter, case-insensitively. Like Alipay,
// a missing charset means GBK; gb2312 is read as GBK, its superset.
func parseCharset(v string) (charset, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "utf-8", "utf8":
		return charsetUTF8, true
	case "gbk", "gb2312", "":
		return charsetGBK, true
	}
	return "", false
}

// decode turns a raw form value in c into UTF-8.
func (c charset) decode(raw string) (string, error) {
	if c != charsetGBK {
		return raw, nil
	}
	return simplifiedchinese.GBK.NewDecoder().String(raw)
}

// encode turns UTF-8 text into c. Everything the sandbox writes is encodable.
func (c charset) encode(text []byte) ([]byte, error) {
	if c != charsetGBK {
		return text, nil
	}
	return simplifiedchinese.GBK.NewEncoder().Bytes(text)
}

func (c charset) contentType() string {
	return "application/json;charset=" + string(c)
}
