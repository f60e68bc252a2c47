package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// job is one line of a batch file: fake but well-formed personal data.
type job struct {
	Method string
	TxID   string
	Line   []byte
	params params
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
	p := j.params
	switch j.Method {
	case zhimaq.MethodScoreBriefGet:
		p.score = 350 + (p.score-350+50)%601
	case zhimaq.MethodRelationQuery:
		p.phone = g.phone()
	default:
		p.name, p.certNo = g.name(), g.residentID()
	}
	return p.job(j.Method, j.TxID)
}

// job makes one job of method. score, when not 0, is the admittance score.
func (g *jobGen) job(method, txid string, score int) job {
	var p params
	switch method {
	case zhimaq.MethodScoreBriefGet:
		if score == 0 {
			score = 350 + 50*g.rng.IntN(13)
		}
		p = params{score: score, certNo: g.residentID(), name: g.name()}
	case zhimaq.MethodRelationQuery:
		p = params{certNo: g.residentID(), name: g.name(), phone: g.phone(), relationName: g.name(),
			relation: []string{"family", "workmate", "schoolmate", "friend"}[g.rng.IntN(4)]}
	default:
		p.name = g.name()
		p.certNo = g.residentID()
	}
	return p.job(method, txid)
}

// params are the made-up personal data of one job; a method uses some.
type params struct {
	certNo, name                  string
	score                         int
	phone, relationName, relation string
}

func (p params) job(method, txid string) job {
	var biz json.RawMessage
	switch method {
	case zhimaq.MethodScoreBriefGet:
		biz = zhimatest.ScoreBiz(txid, p.certNo, p.name, p.score)
	case zhimaq.MethodRelationQuery:
		biz = zhimatest.RelationBiz(txid, p.certNo, p.name, p.phone, p.relationName, p.relation)
	default:
		biz = zhimatest.CertificationBiz(txid, p.certNo, p.name, "")
	}
	return job{Method: method, TxID: txid, Line: zhimatest.JobLine(method, biz), params: p}
}

// Area codes of a few mainland districts.
var areaCodes = []string{"110105", "110108", "310104", "310115", "440305", "440106", "510107", "330106", "320102", "420111"}

// residentID returns an 18-character resident ID number with a valid check
// digit: area, birth date (1950–2003), sequence number, check character.
func (g *jobGen) residentID() string {
	year := 1950 + g.rng.IntN(54)
	month := 1 + g.rng.IntN(12)
	day := 1 + g.rng.IntN(28)
	return zhimatest.ResidentID(fmt.Sprintf("%s%04d%02d%02d%03d", areaCodes[g.rng.IntN(len(areaCodes))], year, month, day, g.rng.IntN(1000)))
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
