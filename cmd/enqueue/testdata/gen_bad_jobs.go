//go:build ignore

// gen_bad_jobs writes the committed corpus of job lines that enqueue must
// refuse, with a few good ones between them, and what each refusal must say:
//
//	cd cmd/enqueue/testdata && go run gen_bad_jobs.go
//
// It writes two files that go together line by line:
//
//   - bad-jobs.jsonl: the job lines, exactly as a producer might send them;
//     some are blank (enqueue skips those), one is 2 MiB long.
//   - bad-jobs.expect: for line n of bad-jobs.jsonl, line n holds three
//     tab-separated columns: the outcome, a detail, and "# what the line is".
//     The outcome is "blank" (no record), "succeeded" (detail: the
//     transaction_id), "duplicate" (succeeded, answered from an earlier
//     line; detail: the transaction_id) or the sub_code of a rejection
//     (detail: a part of its sub_msg that names the problem).
//
// The ID numbers, names and phone numbers are made up; enqueue's output must
// never quote them. Lines too big to commit (over zhimaq.MaxJobBytes, a
// million nested arrays) are made by corpus_test.go at run time.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

const (
	methodCert     = zhima.MethodCertificationInitialize
	methodScore    = zhima.MethodScoreBriefGet
	methodRelation = zhima.MethodRelationQuery

	maxFacePicture = zhima.MaxFacePicture
)

// id is a valid, made-up resident ID number, different for each n.
func id(n int) string { return zhimatest.ResidentID(fmt.Sprintf("3201021987%07d", 5310000+n)) }

// badCheck is id(n) with a check digit that does not match.
func badCheck(n int) string {
	good := id(n)
	wrong := byte('0')
	if good[17] == '0' {
		wrong = '1'
	}
	return good[:17] + string(wrong)
}

// obj is a JSON object whose keys keep their order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshal(f.k)
		v, err := marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// raw is JSON written as is.
type raw string

func marshal(v any) ([]byte, error) {
	if r, ok := v.(raw); ok {
		return []byte(r), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func mustJSON(v any) string {
	b, err := marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	return string(b)
}

// with returns o with field k set to v (replaced in place, or appended);
// a v of del removes it.
func (o obj) with(k string, v any) obj {
	out := make(obj, 0, len(o)+1)
	found := false
	for _, f := range o {
		if f.k == k {
			found = true
			if v == del {
				continue
			}
			f.v = v
		}
		out = append(out, f)
	}
	if !found && v != del {
		out = append(out, kv{k, v})
	}
	return out
}

type deleted struct{}

var del any = deleted{}

func job(method any, biz any) obj { return obj{{"method", method}, {"biz_content", biz}} }

// fields is the JSON object b as an obj, its values kept as written.
func fields(b []byte) obj {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		log.Fatalf("not a JSON object: %s", b)
	}
	var o obj
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			log.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			log.Fatal(err)
		}
		o = append(o, kv{k.(string), raw(v)})
	}
	return o
}

func score(tid string, n int) obj { return fields(zhimatest.ScoreBiz(tid, id(n), "赵建国", 650)) }

func relation(tid string, n int) obj {
	return fields(zhimatest.RelationBiz(tid, id(n), "钱秀英", "13912345678", "孙志强", "family"))
}

func identity(n int) obj { return fields([]byte(zhimatest.IdentityParam(id(n), "周美玲"))) }

func cert(tid string, n int) obj {
	return fields(zhimatest.CertificationBiz(tid, id(n), "周美玲", ""))
}

// line is one corpus line and what enqueue must make of it.
type line struct {
	text    string
	outcome string // blank, succeeded, duplicate, or a sub_code
	detail  string // the transaction_id, or a part of the sub_msg
	what    string
}

const invalid = "INVALID_PARAMETER"

func main() {
	var ls []line
	good := func(what string, o obj, tid string) {
		ls = append(ls, line{mustJSON(o), "succeeded", tid, what})
	}
	bad := func(what, text, detail string) {
		ls = append(ls, line{text, invalid, detail, what})
	}
	badJob := func(what string, o obj, detail string) { bad(what, mustJSON(o), detail) }
	n := 100 // ID numbers of bad lines: id(100), id(101), …
	next := func() int { n++; return n }
	tid := func(prefix string) string { return fmt.Sprintf("BAD_%s_%03d", prefix, len(ls)+1) }

	good("good score brief", job(methodScore, score("CORPUS_OK_SCORE_1", 1)), "CORPUS_OK_SCORE_1")

	// Not JSON, or not a job.
	bad("truncated JSON", `{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"BAD_TRUNC_1","cert_no":"`+id(next())+`"`, "job: truncated JSON")
	bad("truncated inside a string", `{"method":"zhima.credit.relation.query","biz_content":{"name":"钱秀`, "job: truncated JSON")
	bad("missing colon", `{"method" "zhima.credit.score.brief.get"}`, "job: malformed JSON at byte")
	bad("trailing comma", strings.TrimSuffix(mustJSON(job(methodScore, score(tid("COMMA"), next()))), "}")+",}", "job: malformed JSON")
	bad("single quotes", `{'method':'zhima.credit.score.brief.get'}`, "job: malformed JSON")
	bad("a bare word", `nope`, "job: malformed JSON")
	bad("a comment", `// {"method":"zhima.credit.score.brief.get"}`, "job: malformed JSON")
	bad("a NUL byte", "{\"method\":\x00\"zhima.credit.score.brief.get\"}", "job: malformed JSON")
	bad("a byte-order mark that does not start the input", "\xef\xbb\xbf"+mustJSON(job(methodScore, score(tid("BOM"), next()))), "job: malformed JSON")
	bad("a JSON null", `null`, "job: must be a JSON object")
	bad("just a string", `"zhima.credit.score.brief.get"`, "must be a JSON object")
	bad("just a number", `42`, "must be a JSON object")
	bad("just true", `true`, "must be a JSON object")
	bad("an array of jobs", "["+mustJSON(job(methodScore, score(tid("ARRAY"), next())))+"]", "must be a JSON object")
	bad("an empty object", `{}`, "method: is required")
	bad("two JSON objects on one line", mustJSON(job(methodScore, score(tid("TWO"), next())))+" "+mustJSON(job(methodScore, score(tid("TWO"), next()))), "more than one JSON value")
	bad("two JSON objects without a space", mustJSON(job(methodScore, score(tid("TWO"), next())))+mustJSON(job(methodScore, score(tid("TWO"), next()))), "more than one JSON value")
	bad("a job followed by a word", mustJSON(job(methodScore, score(tid("TAIL"), next())))+" x", "more than one JSON value")
	ls = append(ls, line{"", "blank", "", "an empty line"})
	// A job followed by a stray closer is not one JSON value either
	// (json.Decoder.More alone would miss it).
	bad("a job followed by a stray }", mustJSON(job(methodScore, score(tid("TAIL"), next())))+"}", "more than one JSON value")
	bad("a job followed by a stray ]", mustJSON(job(methodScore, score(tid("TAIL"), next())))+"]", "more than one JSON value")

	// Invalid UTF-8 and deep nesting.
	bad("invalid UTF-8 in a name", strings.Replace(mustJSON(job(methodScore, score(tid("UTF8"), next()))), "赵建国", "赵\xff\xfe国", 1), "job: line is not valid UTF-8")
	bad("invalid UTF-8 in the method", "{\"method\":\"zhima.credit.score.brief.get\xc3\",\"biz_content\":{}}", "job: line is not valid UTF-8")
	bad("a lone UTF-16 surrogate encoded in UTF-8", strings.Replace(mustJSON(job(methodScore, score(tid("UTF8"), next()))), "赵建国", "赵\xed\xa0\x80国", 1), "job: line is not valid UTF-8")
	bad("10,000 nested arrays as biz_content", `{"method":"zhima.credit.score.brief.get","biz_content":`+strings.Repeat("[", 10000)+strings.Repeat("]", 10000)+`}`, "job: malformed JSON")
	bad("9,990 nested arrays as biz_content", `{"method":"zhima.credit.score.brief.get","biz_content":`+strings.Repeat("[", 9990)+strings.Repeat("]", 9990)+`}`, "biz_content: must be a JSON object")
	bad("10,000 nested objects as biz_content", `{"method":"zhima.credit.score.brief.get","biz_content":`+strings.Repeat(`{"a":`, 10000)+"1"+strings.Repeat("}", 10000)+`}`, "job: malformed JSON")
	bad("5,000 nested arrays as transaction_id", mustJSON(job(methodScore, score("", next()).with("transaction_id", raw(strings.Repeat("[", 5000)+strings.Repeat("]", 5000))))), "transaction_id must be a JSON string")

	good("good relation query", job(methodRelation, relation("CORPUS_OK_REL_1", 2)), "CORPUS_OK_REL_1")

	// Wrong types.
	bad("method as a number", `{"method":42,"biz_content":`+mustJSON(score(tid("TYPE"), next()))+`}`, "method must be a JSON string, not number")
	bad("method as an object", `{"method":{"id":"zhima.credit.score.brief.get"},"biz_content":`+mustJSON(score(tid("TYPE"), next()))+`}`, "method must be a JSON string")
	badJob("biz_content as an array", job(methodScore, []any{score(tid("TYPE"), next())}), "biz_content: must be a JSON object")
	badJob("biz_content as a string holding the object", job(methodScore, mustJSON(score(tid("TYPE"), next()))), "biz_content: must be a JSON object")
	badJob("biz_content as a number", job(methodScore, 650), "biz_content: must be a JSON object")
	badJob("biz_content null", job(methodScore, nil), "biz_content: must be a JSON object")
	badJob("admittance_score as a string", job(methodScore, score(tid("TYPE"), next()).with("admittance_score", "650")), "admittance_score must be a JSON number, not string")
	badJob("admittance_score 650.5", job(methodScore, score(tid("TYPE"), next()).with("admittance_score", raw("650.5"))), "admittance_score")
	badJob("admittance_score true", job(methodScore, score(tid("TYPE"), next()).with("admittance_score", true)), "admittance_score must be a JSON number")
	badJob("cert_no as a JSON number", job(methodScore, score(tid("TYPE"), next()).with("cert_no", raw(id(next())[:17]))), "cert_no must be a JSON string, not number")
	badJob("transaction_id as a number", job(methodScore, score("", next()).with("transaction_id", 12345)), "transaction_id must be a JSON string")
	badJob("relation_phone as a number", job(methodRelation, relation(tid("TYPE"), next()).with("relation_phone", raw("13912345678"))), "relation_phone must be a JSON string")
	badJob("identity_param as an object instead of a string", job(methodCert, cert(tid("TYPE"), next()).with("identity_param", identity(next()))), "identity_param must be a JSON string, not object")
	bad("app_auth_token as a number", `{"method":"zhima.credit.score.brief.get","biz_content":`+mustJSON(score(tid("TYPE"), next()))+`,"app_auth_token":1}`, "app_auth_token must be a JSON string")

	// Methods and fields.
	badJob("unknown method", job("zhima.credit.score.get", score(tid("METHOD"), next())), "method: unknown method")
	badJob("method in capitals", job(strings.ToUpper(methodScore), score(tid("METHOD"), next())), "method: unknown method")
	badJob("method with a trailing space", job(methodScore+" ", score(tid("METHOD"), next())), "method: unknown method")
	badJob("missing method", obj{{"biz_content", score(tid("METHOD"), next())}}, "method: is required")
	badJob("empty method", job("", score(tid("METHOD"), next())), "method: is required")
	badJob("missing biz_content", obj{{"method", methodScore}}, "biz_content: must be a JSON object")
	// An unknown field name is never quoted (it may be personal data used as
	// a key): the error lists the fields, or names the known one it matches
	// but for letter case.
	const jobFields = "job: unknown field; want one of method, biz_content, app_auth_token, app_id, lane"
	const scoreFields = "biz_content: unknown field; want one of transaction_id, product_code, cert_type, cert_no, name, admittance_score"
	badJob("unknown top-level field", job(methodScore, score(tid("FIELD"), next())).with("priority", 1), jobFields)
	badJob("biz_content misspelt", obj{{"method", methodScore}, {"bizcontent", score(tid("FIELD"), next())}}, jobFields)
	badJob("method in capitals as a field name", obj{{"METHOD", methodScore}, {"biz_content", score(tid("FIELD"), next())}}, "job: unknown field; did you mean method")
	badJob("unknown biz_content field", job(methodScore, score(tid("FIELD"), next()).with("mobile", "13912345678")), scoreFields)
	badJob("a field of another method", job(methodScore, score(tid("FIELD"), next()).with("relation_name", "孙志强")), scoreFields)
	badJob("a name in pinyin as a biz_content field", job(methodScore, score(tid("FIELD"), next()).with("zhaojianguo", "赵建国")), scoreFields)
	badJob("an ID number as a biz_content field", job(methodScore, score(tid("FIELD"), next()).with(id(next()), "赵建国")), scoreFields)
	badJob("cert_no in capitals", job(methodScore, score(tid("FIELD"), next()).with("cert_no", del).with("CERT_NO", id(next()))), "biz_content: unknown field; did you mean cert_no")

	good("good certification initialize with a face picture", job(methodCert, cert("CORPUS_OK_CERT_1", 3).with("face_contrast_picture", "aGVsbG8gZmFjZQ==")), "CORPUS_OK_CERT_1")

	// Missing required fields, each method.
	for _, f := range []struct{ field, detail string }{
		{"transaction_id", "transaction_id: is required"}, {"product_code", "product_code: is required"},
		{"cert_type", "cert_type: is required"}, {"cert_no", "cert_no: is required"},
		{"name", "name: is required"}, {"admittance_score", "admittance_score: must be between 350 and 950"},
	} {
		badJob("score brief without "+f.field, job(methodScore, score(tid("REQ"), next()).with(f.field, del)), f.detail)
	}
	for _, f := range []string{"product_code", "transaction_id", "cert_no", "name", "relation_phone", "relation_name"} {
		badJob("relation query without "+f, job(methodRelation, relation(tid("REQ"), next()).with(f, del)), f+": is required")
	}
	for _, f := range []string{"transaction_id", "product_code", "biz_code", "identity_param"} {
		badJob("certification without "+f, job(methodCert, cert(tid("REQ"), next()).with(f, del)), f+": is required")
	}
	for _, f := range []string{"identity_type", "cert_type", "cert_name", "cert_no"} {
		badJob("certification without identity_param."+f, job(methodCert, cert(tid("REQ"), next()).with("identity_param", mustJSON(identity(next()).with(f, del)))), "identity_param."+f+": is required")
	}
	badJob("empty biz_content", job(methodRelation, obj{}), "product_code: is required")

	// Too long.
	badJob("transaction_id of 65 characters", job(methodScore, score(strings.Repeat("T", 65), next())), "transaction_id: is longer than 64 characters")
	badJob("relation transaction_id of 65 characters", job(methodRelation, relation(strings.Repeat("R", 65), next())), "transaction_id: is longer than 64 characters")
	badJob("certification transaction_id of 33 characters", job(methodCert, cert(strings.Repeat("C", 33), next())), "transaction_id: is longer than 32 characters")
	badJob("name of 65 characters", job(methodScore, score(tid("LONG"), next()).with("name", strings.Repeat("赵", 65))), "name: is longer than 64 characters")
	badJob("relation_name of 65 characters", job(methodRelation, relation(tid("LONG"), next()).with("relation_name", strings.Repeat("孙", 65))), "relation_name: is longer than 64 characters")
	badJob("score product_code of 21 characters", job(methodScore, score(tid("LONG"), next()).with("product_code", zhimatest.ProductScore+"00")), "product_code: is longer than 20 characters")
	badJob("relation product_code of 33 characters", job(methodRelation, relation(tid("LONG"), next()).with("product_code", strings.Repeat("w", 33))), "product_code: is longer than 32 characters")
	badJob("biz_code of 33 characters", job(methodCert, cert(tid("LONG"), next()).with("biz_code", strings.Repeat("F", 33))), "biz_code: is longer than 32 characters")
	badJob("identity_param of 4,097 characters", job(methodCert, cert(tid("LONG"), next()).with("identity_param", padObject(identity(next()), 4097))), "identity_param: is longer than 4096 characters")
	badJob("merchant_config of 1,025 characters", job(methodCert, cert(tid("LONG"), next()).with("merchant_config", padObject(obj{}, 1025))), "merchant_config: is longer than 1024 characters")
	badJob("linked_merchant_id of 17 characters", job(methodCert, cert(tid("LONG"), next()).with("linked_merchant_id", strings.Repeat("2", 17))), "linked_merchant_id: is longer than 16 characters")
	badJob("passport number of 33 characters", job(methodScore, score(tid("LONG"), next()).with("cert_type", "PASSPORT").with("cert_no", "E"+strings.Repeat("1", 32))), "cert_no: is longer than 32 characters")
	badJob("cert_no of 19 digits", job(methodScore, score(tid("LONG"), next()).with("cert_no", id(next())+"1")), "cert_no: is longer than 18 characters")

	// ID numbers.
	badJob("ID number with a wrong check digit", job(methodScore, score(tid("ID"), next()).with("cert_no", badCheck(next()))), "cert_no: check digit does not match")
	badJob("relation ID number with a wrong check digit", job(methodRelation, relation(tid("ID"), next()).with("cert_no", badCheck(next()))), "cert_no: check digit does not match")
	badJob("ID number of 17 digits", job(methodScore, score(tid("ID"), next()).with("cert_no", id(next())[:17])), "cert_no: an ID number has 18 or 15 characters")
	badJob("ID number with letters", job(methodScore, score(tid("ID"), next()).with("cert_no", "32010219AB"+id(next())[10:])), "cert_no: the first 17 characters of an ID number must be digits")
	badJob("ID number of 15 characters with a letter", job(methodRelation, relation(tid("ID"), next()).with("cert_no", id(next())[:14]+"X")), "cert_no: a 15-character ID number must be all digits")
	badJob("ID number with a space", job(methodRelation, relation(tid("ID"), next()).with("cert_no", id(next())[:6]+" "+id(n)[6:16])), "cert_no: an ID number has 18 or 15 characters")
	badJob("ID number in full-width digits", job(methodScore, score(tid("ID"), next()).with("cert_no", fullWidth(id(next())))), "cert_no: an ID number has 18 or 15 characters")
	badJob("certification ID number with a wrong check digit", job(methodCert, cert(tid("ID"), next()).with("identity_param", mustJSON(identity(next()).with("cert_no", badCheck(next()))))), "identity_param.cert_no: check digit does not match")
	badJob("Alipay user id with letters", job(methodScore, score(tid("ID"), next()).with("cert_type", "ALIPAY_USER_ID").with("cert_no", "2088ABC"+id(next())[:9]).with("name", del)), "cert_no: an Alipay user id is all digits")

	good("good score brief for an Alipay user id, no name, with app_auth_token", job(methodScore, score("CORPUS_OK_SCORE_2", 4).with("cert_type", "ALIPAY_USER_ID").with("cert_no", "2088102177846591").with("name", del)).with("app_auth_token", "201510BB0c409dd5758b4d939d4008a525463X82"), "CORPUS_OK_SCORE_2")

	// transaction_id characters.
	for _, t := range []struct{ what, tid string }{
		{"a dash", "BAD-TXN-001"}, {"a space", "BAD TXN 002"}, {"Chinese characters", "订单号003"},
		{"an emoji", "BAD_TXN_😀_004"}, {"a newline", "BAD_TXN\n005"}, {"a dot", "BAD.TXN.006"},
	} {
		badJob("transaction_id with "+t.what, job(methodScore, score(t.tid, next())), "transaction_id: may hold only letters, digits and '_'")
	}
	badJob("certification transaction_id with a dash", job(methodCert, cert("BAD-CERT-007", next())), "transaction_id: may hold only letters, digits and '_'")
	ls = append(ls, line{"  \t ", "blank", "", "a line of spaces and a tab"})

	// Names.
	for _, c := range []string{",", "|", "&", "^", `\`} {
		badJob("name with "+c, job(methodScore, score(tid("NAME"), next()).with("name", "赵"+c+"建国")), "name: holds a forbidden character")
	}
	badJob("name with \\u0001", job(methodScore, score(tid("NAME"), next()).with("name", "赵\u0001建国")), "name: holds a control character")
	badJob("name with a tab", job(methodRelation, relation(tid("NAME"), next()).with("name", "钱\t秀英")), "name: holds a control character")
	badJob("relation_name with |", job(methodRelation, relation(tid("NAME"), next()).with("relation_name", "孙|志强")), "relation_name: holds a forbidden character")
	badJob("relation_name with \\u0001", job(methodRelation, relation(tid("NAME"), next()).with("relation_name", "孙\u0001志强")), "relation_name: holds a control character")
	badJob("certification cert_name with &", job(methodCert, cert(tid("NAME"), next()).with("identity_param", mustJSON(identity(next()).with("cert_name", "周&美玲")))), "identity_param.cert_name: holds a forbidden character")

	// Phone numbers.
	for _, p := range []struct{ what, phone, detail string }{
		{"10 digits", "1391234567", "must be an 11-digit mainland mobile number"},
		{"12 digits", "139123456789", "must be an 11-digit mainland mobile number"},
		{"a landline", "02583124567", "must be an 11-digit mainland mobile number"},
		{"12 as its prefix", "12912345678", "must be an 11-digit mainland mobile number"},
		{"a country code", "+8613912345678", "must be an 11-digit mainland mobile number"},
		{"dashes", "139-1234-5678", "must be an 11-digit mainland mobile number"},
		{"a letter", "1391234567O", "must be an 11-digit mainland mobile number"},
		{"25 digits", "1391234567813912345678139", "is longer than 24 characters"},
	} {
		badJob("relation_phone with "+p.what, job(methodRelation, relation(tid("PHONE"), next()).with("relation_phone", p.phone)), "relation_phone: "+p.detail)
	}

	// Enums and numbers.
	badJob("relation not in the enum", job(methodRelation, relation(tid("ENUM"), next()).with("relation", "brother")), "relation: must be one of family, workmate, schoolmate, friend")
	badJob("relation in capitals", job(methodRelation, relation(tid("ENUM"), next()).with("relation", "Family")), "relation: must be one of")
	badJob("cert_type not in the enum", job(methodScore, score(tid("ENUM"), next()).with("cert_type", "ID_CARD")), "cert_type: must be one of IDENTITY_CARD, PASSPORT, ALIPAY_USER_ID")
	badJob("cert_type in lower case", job(methodScore, score(tid("ENUM"), next()).with("cert_type", "identity_card")), "cert_type: must be one of")
	badJob("identity_param.cert_type not IDENTITY_CARD", job(methodCert, cert(tid("ENUM"), next()).with("identity_param", mustJSON(identity(next()).with("cert_type", "PASSPORT")))), "identity_param.cert_type: must be one of IDENTITY_CARD")
	badJob("admittance_score 349", job(methodScore, score(tid("SCORE"), next()).with("admittance_score", 349)), "admittance_score: must be between 350 and 950")
	badJob("admittance_score 951", job(methodScore, score(tid("SCORE"), next()).with("admittance_score", 951)), "admittance_score: must be between 350 and 950")
	badJob("admittance_score -650", job(methodScore, score(tid("SCORE"), next()).with("admittance_score", -650)), "admittance_score: must be between 350 and 950")
	badJob("admittance_score 6.5e2", job(methodScore, score(tid("SCORE"), next()).with("admittance_score", raw("6.5e2"))), "admittance_score")

	// identity_param and the face picture.
	badJob("identity_param not JSON", job(methodCert, cert(tid("IDP"), next()).with("identity_param", "CERT_INFO")), "identity_param: must be a JSON object")
	badJob("identity_param a JSON array", job(methodCert, cert(tid("IDP"), next()).with("identity_param", "["+mustJSON(identity(next()))+"]")), "identity_param: must be a JSON object")
	badJob("identity_param null", job(methodCert, cert(tid("IDP"), next()).with("identity_param", "null")), "identity_param: must be a JSON object")
	badJob("identity_param truncated", job(methodCert, cert(tid("IDP"), next()).with("identity_param", strings.TrimSuffix(mustJSON(identity(next())), "}"))), "identity_param: must be a JSON object")
	badJob("identity_param with cert_no as a number", job(methodCert, cert(tid("IDP"), next()).with("identity_param", mustJSON(identity(next()).with("cert_no", raw(id(next())[:17]))))), "identity_param: fields must be strings")
	badJob("merchant_config not JSON", job(methodCert, cert(tid("IDP"), next()).with("merchant_config", "return_url=x")), "merchant_config: must be a JSON object")
	badJob("face_contrast_picture not base64", job(methodCert, cert(tid("FACE"), next()).with("face_contrast_picture", "not base64 at all!")), "face_contrast_picture: is not standard base64")
	badJob("face_contrast_picture in URL-safe base64", job(methodCert, cert(tid("FACE"), next()).with("face_contrast_picture", "_-8_-8_-")), "face_contrast_picture: is not standard base64")
	badJob("face_contrast_picture without padding", job(methodCert, cert(tid("FACE"), next()).with("face_contrast_picture", "aGVsbG8")), "face_contrast_picture: is not standard base64")
	badJob("face_contrast_picture of 2 MiB", job(methodCert, cert(tid("FACE"), next()).with("face_contrast_picture", strings.Repeat("QUFB", 2*maxFacePicture/4))), "job: line is larger than")

	good("good relation query without a relation", job(methodRelation, relation("CORPUS_OK_REL_2", 5).with("relation", del)), "CORPUS_OK_REL_2")

	// Against the lines above: the same transaction_id again.
	ls = append(ls, line{mustJSON(job(methodScore, score("CORPUS_OK_SCORE_1", 1))), "duplicate", "CORPUS_OK_SCORE_1", "a good line again: answered from the first"})
	ls = append(ls, line{mustJSON(job(methodScore, score("CORPUS_OK_SCORE_1", 1).with("admittance_score", 700))), "TRANSACTION_ID_REPEAT", "transaction_id was already used", "a good line's transaction_id with other parameters"})

	var jsonl, expect bytes.Buffer
	for _, l := range ls {
		if strings.ContainsAny(l.text, "\r\n") || strings.ContainsAny(l.detail+l.what, "\t\n") {
			log.Fatalf("line %q breaks the format", l.what)
		}
		jsonl.WriteString(l.text + "\n")
		fmt.Fprintf(&expect, "%s\t%s\t# %s\n", l.outcome, l.detail, l.what)
	}
	if err := os.WriteFile("bad-jobs.jsonl", jsonl.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("bad-jobs.expect", expect.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d lines, %d bytes", len(ls), jsonl.Len())
}

// padObject returns o as a JSON string of exactly size characters, padded
// with an "ext" field.
func padObject(o obj, size int) string {
	s := mustJSON(o.with("ext", ""))
	if utf8.RuneCountInString(s) > size {
		log.Fatalf("cannot pad %d characters to %d", utf8.RuneCountInString(s), size)
	}
	s = mustJSON(o.with("ext", strings.Repeat("x", size-utf8.RuneCountInString(s))))
	if utf8.RuneCountInString(s) != size {
		log.Fatalf("padded to %d, not %d", len(s), size)
	}
	return s
}

// fullWidth writes s's ASCII digits and X as full-width characters.
func fullWidth(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == 'X' {
			b.WriteRune('Ｘ')
			continue
		}
		b.WriteRune(r - '0' + '０')
	}
	return b.String()
}
