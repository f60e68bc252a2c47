package zhima

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// field checks one request field; the first failure becomes an INVALID_PARAMETER
// error naming the field. No message ever quotes the value.
type fieldCheck struct {
	method string
	err    *Error
}

func (c *fieldCheck) fail(field, detail string) {
	if c.err == nil {
		c.err = invalidParam(c.method, field, detail)
	}
}

func (c *fieldCheck) result() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

// text checks a string field: required or not, at most max characters, valid UTF-8.
func (c *fieldCheck) text(field, v string, required bool, max int) bool {
	switch {
	case v == "":
		if required {
			c.fail(field, "is required")
		}
		return false
	case !utf8.ValidString(v):
		c.fail(field, "is not valid UTF-8")
	case utf8.RuneCountInString(v) > max:
		c.fail(field, "is longer than "+strconv.Itoa(max)+" characters")
	default:
		return true
	}
	return false
}

// transactionID checks the gateway's rule: letters, digits and '_', at most max.
func (c *fieldCheck) transactionID(v string, max int) {
	if !c.text("transaction_id", v, true, max) {
		return
	}
	if !IsTransactionID(v) {
		c.fail("transaction_id", "may hold only letters, digits and '_'")
	}
}

// IsTransactionID reports whether s has the form of a transaction_id:
// 1–64 letters, digits and '_'. Such a value is safe to print and log;
// anything else might be personal data pasted in the wrong field.
func IsTransactionID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_') {
			return false
		}
	}
	return true
}

// personName checks a name as the gateway wants it: at most 64 characters and
// none of , \u0001 | & ^ \ or other control characters.
func (c *fieldCheck) personName(field, v string, required bool) {
	if !c.text(field, v, required, 64) {
		return
	}
	for _, r := range v {
		switch {
		case r == ',' || r == '|' || r == '&' || r == '^' || r == '\\':
			c.fail(field, "holds a forbidden character (, | & ^ \\)")
			return
		case r < 0x20 || r == 0x7f:
			c.fail(field, "holds a control character")
			return
		}
	}
}

// residentID checks a mainland resident ID number: 18 characters with a valid
// ISO 7064 check digit, or the old 15-digit form.
func (c *fieldCheck) residentID(field, v string) {
	if !c.text(field, v, true, 18) {
		return
	}
	if detail := residentIDProblem(v); detail != "" {
		c.fail(field, detail)
	}
}

func residentIDProblem(v string) string {
	switch len(v) {
	case 15:
		if !allDigits(v) {
			return "a 15-character ID number must be all digits"
		}
		return ""
	case 18:
		if !allDigits(v[:17]) {
			return "the first 17 characters of an ID number must be digits"
		}
		if ResidentIDCheckDigit(v[:17]) != upperX(v[17]) {
			return "check digit does not match"
		}
		return ""
	}
	return "an ID number has 18 or 15 characters"
}

var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// ResidentIDCheckDigit returns the check character of an 18-character
// mainland resident ID number (GB 11643): the ISO 7064 MOD 11-2 digit of
// first17, one of '0'–'9' or an upper-case 'X'. first17 must be the number's
// first 17 characters, all ASCII digits; it panics when first17 is shorter,
// and the result means nothing for other characters.
func ResidentIDCheckDigit(first17 string) byte {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * idWeights[i]
	}
	return "10X98765432"[sum%11]
}

func upperX(b byte) byte {
	if b == 'x' {
		return 'X'
	}
	return b
}

// mobile checks a mainland mobile number: 11 digits starting 13–19.
func (c *fieldCheck) mobile(field, v string) {
	if !c.text(field, v, true, 24) {
		return
	}
	if len(v) != 11 || !allDigits(v) || v[0] != '1' || v[1] < '3' {
		c.fail(field, "must be an 11-digit mainland mobile number")
	}
}

// oneOf checks an enumerated field.
func (c *fieldCheck) oneOf(field, v string, required bool, allowed ...string) {
	if v == "" {
		if required {
			c.fail(field, "is required")
		}
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	msg := "must be one of"
	for i, a := range allowed {
		if i > 0 {
			msg += ","
		}
		msg += " " + a
	}
	c.fail(field, msg)
}

// jsonObject checks a field that carries a JSON object as a string.
func (c *fieldCheck) jsonObject(field, v string, required bool, max int) bool {
	if !c.text(field, v, required, max) {
		return false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &obj); err != nil || obj == nil {
		c.fail(field, "must be a JSON object")
		return false
	}
	return true
}

// base64Text checks a base64 field of at most max characters.
func (c *fieldCheck) base64Text(field, v string, max int) {
	if v == "" {
		return
	}
	if len(v) > max {
		c.fail(field, "is larger than "+strconv.Itoa(max)+" characters")
		return
	}
	if _, err := base64.StdEncoding.DecodeString(v); err != nil {
		c.fail(field, "is not standard base64")
	}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
