package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Product codes of the three methods.
const (
	productScore         = "w1010100000000002733"
	productRelation      = "w1010100001000001200"
	productCertification = "w1010100000000002978"
)

// job is one line of a batch file: fake but well-formed personal data.
type job struct {
	Method string
	TxID   string
	Line   []byte
}

func (j job) ref() zhimaq.Ref { return zhimaq.Ref{Method: j.Method, TransactionID: j.TxID} }

// jobGen makes fake jobs. Its output depends only on its seed.
type jobGen struct {
	rng *rand.Rand
}

func newJobGen(seed uint64) *jobGen {
	return &jobGen{rng: rand.New(rand.NewPCG(seed, 0x6368616f73))}
}

// txID is the transaction_id of job i of a drill: prefix (letters, digits,
// '_') and a zero-padded number, well under certification's 32 characters.
func txID(prefix string, i int) string { return fmt.Sprintf("%s_%06d", prefix, i) }

// batch returns n jobs numbered from..from+n-1: half score checks, three
// tenths relation queries, a fifth face certifications.
func (g *jobGen) batch(prefix string, from, n int) []job {
	jobs := make([]job, 0, n)
	for i := from; i < from+n; i++ {
		var method string
		switch i % 10 {
		case 0, 2, 4, 6, 8:
			method = zhimaq.MethodScoreBriefGet
		case 1, 5, 9:
			method = zhimaq.MethodRelationQuery
		default:
			method = zhimaq.MethodCertificationInitialize
		}
		jobs = append(jobs, g.job(method, txID(prefix, i), 0))
	}
	return jobs
}

// conflicting returns a job with j's method and transaction_id but other
// parameters, which the producer must refuse with TRANSACTION_ID_REPEAT.
func (g *jobGen) conflicting(j job) job {
	var biz map[string]any
	var probe struct {
		BizContent json.RawMessage `json:"biz_content"`
	}
	if err := json.Unmarshal(j.Line, &probe); err != nil {
		panic("chaos: a generated job does not parse: " + err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(probe.BizContent))
	dec.UseNumber()
	if err := dec.Decode(&biz); err != nil {
		panic("chaos: a generated job does not parse: " + err.Error())
	}
	switch j.Method {
	case zhimaq.MethodScoreBriefGet:
		s, _ := biz["admittance_score"].(json.Number).Int64()
		biz["admittance_score"] = 350 + (s-350+50)%601
	case zhimaq.MethodRelationQuery:
		biz["relation_phone"] = g.phone()
	default:
		biz["identity_param"] = g.identityParam(g.name(), g.residentID())
	}
	return job{Method: j.Method, TxID: j.TxID, Line: jobLine(j.Method, biz)}
}

// job makes one job of method. score, when not 0, is the admittance score.
func (g *jobGen) job(method, txid string, score int) job {
	var biz any
	switch method {
	case zhimaq.MethodScoreBriefGet:
		if score == 0 {
			score = 350 + 50*g.rng.IntN(13)
		}
		biz = struct {
			TransactionID   string `json:"transaction_id"`
			ProductCode     string `json:"product_code"`
			CertType        string `json:"cert_type"`
			CertNo          string `json:"cert_no"`
			Name            string `json:"name"`
			AdmittanceScore int    `json:"admittance_score"`
		}{txid, productScore, "IDENTITY_CARD", g.residentID(), g.name(), score}
	case zhimaq.MethodRelationQuery:
		biz = struct {
			ProductCode   string `json:"product_code"`
			TransactionID string `json:"transaction_id"`
			CertNo        string `json:"cert_no"`
			Name          string `json:"name"`
			RelationPhone string `json:"relation_phone"`
			RelationName  string `json:"relation_name"`
			Relation      string `json:"relation"`
		}{productRelation, txid, g.residentID(), g.name(), g.phone(), g.name(),
			[]string{"family", "workmate", "schoolmate", "friend"}[g.rng.IntN(4)]}
	default:
		biz = struct {
			TransactionID string `json:"transaction_id"`
			ProductCode   string `json:"product_code"`
			BizCode       string `json:"biz_code"`
			IdentityParam string `json:"identity_param"`
		}{txid, productCertification, "FACE", g.identityParam(g.name(), g.residentID())}
	}
	return job{Method: method, TxID: txid, Line: jobLine(method, biz)}
}

func jobLine(method string, biz any) []byte {
	b, err := json.Marshal(struct {
		Method     string `json:"method"`
		BizContent any    `json:"biz_content"`
	}{method, biz})
	if err != nil {
		panic("chaos: encode a job: " + err.Error())
	}
	return b
}

func (g *jobGen) identityParam(name, certNo string) string {
	b, _ := json.Marshal(map[string]string{"identity_type": "CERT_INFO", "cert_type": "IDENTITY_CARD",
		"cert_name": name, "cert_no": certNo})
	return string(b)
}

// Area codes of a few mainland districts.
var areaCodes = []string{"110105", "110108", "310104", "310115", "440305", "440106", "510107", "330106", "320102", "420111"}

// residentID returns an 18-character resident ID number with a valid check
// digit: area, birth date (1950–2003), sequence number, check character.
func (g *jobGen) residentID() string {
	year := 1950 + g.rng.IntN(54)
	month := 1 + g.rng.IntN(12)
	day := 1 + g.rng.IntN(28)
	first17 := fmt.Sprintf("%s%04d%02d%02d%03d", areaCodes[g.rng.IntN(len(areaCodes))], year, month, day, g.rng.IntN(1000))
	return first17 + string(zhima.ResidentIDCheckDigit(first17))
}

// phone returns a mainland mobile number: 1, then 3–9, then nine digits.
func (g *jobGen) phone() string {
	return fmt.Sprintf("1%d%09d", 3+g.rng.IntN(7), g.rng.IntN(1_000_000_000))
}

var (
	surnames   = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "高", "罗", "欧阳", "司马"}
	givenNames = []string{"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "桂英", "建华", "志强", "海燕", "晓东", "雨萱"}
)

func (g *jobGen) name() string {
	return surnames[g.rng.IntN(len(surnames))] + givenNames[g.rng.IntN(len(givenNames))]
}

// writeJobs writes jobs to path, one line each.
func writeJobs(path string, jobs []job) error {
	var b bytes.Buffer
	for _, j := range jobs {
		b.Write(j.Line)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}
