package bench

import (
	"bytes"
	"context"
	"crypto/rsa"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

var (
	keysOnce   sync.Once
	appKey     *rsa.PrivateKey
	appKeyErr  error
	signingStr []byte
	signature  string
)

// signInputs loads the test app's key and builds a realistic signing
// string: the parameters the client signs for a score.brief.get call.
func signInputs() (*rsa.PrivateKey, []byte, string, error) {
	keysOnce.Do(func() {
		b, err := os.ReadFile(zhimatest.KeyFile("app_private_pkcs1.pem"))
		if err != nil {
			appKeyErr = err
			return
		}
		if appKey, appKeyErr = zhima.ParsePrivateKey(string(b)); appKeyErr != nil {
			return
		}
		signingStr = []byte(zhima.SigningString(map[string]string{
			"app_id":      zhimatest.AppID,
			"method":      jobMethod,
			"format":      "JSON",
			"charset":     "utf-8",
			"sign_type":   string(zhima.RSA2),
			"timestamp":   zhima.Timestamp(time.Date(2026, 11, 26, 10, 40, 0, 0, time.UTC)),
			"version":     "1.0",
			"biz_content": string(bizContent("BENCH_SIGN_0000000001")),
		}))
		signature, appKeyErr = zhima.Sign(appKey, zhima.RSA2, signingStr)
	})
	return appKey, signingStr, signature, appKeyErr
}

// BenchSign measures zhima.Sign (RSA2, SHA256withRSA) of a realistic
// signing string with the test app's 2048-bit key. BenchmarkSign runs it
// under `go test`; the runner also calls it through testing.Benchmark.
func BenchSign(b *testing.B) {
	key, content, _, err := signInputs()
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU()
	for b.Loop() {
		if _, err := zhima.Sign(key, zhima.RSA2, content); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu0)
}

// reportCPU reports the process's CPU time per op since cpu0 as
// "cpu-ns/op": unlike ns/op it does not grow when other processes take the
// cores, and it is what OpenSSL's speed divides by.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((selfCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchVerify measures zhima.Verify (RSA2) of a signature over the same
// signing string with the test app's public key.
func BenchVerify(b *testing.B) {
	key, content, sig, err := signInputs()
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := selfCPU()
	for b.Loop() {
		if err := zhima.Verify(&key.PublicKey, zhima.RSA2, content, sig); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu0)
}

// perOp runs fn under testing.Benchmark and returns its ns/op and cpu-ns/op.
func perOp(fn func(*testing.B)) (wall, cpu float64) {
	r := testing.Benchmark(fn)
	if r.N == 0 {
		return 0, 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N), r.Extra["cpu-ns/op"]
}

var benchLine = regexp.MustCompile(`(?m)^BenchmarkSign\S*\s+\d+\s+([\d.]+) ns/op(.*)$`)

// signResult is one `go test -bench BenchmarkSign` run.
type signResult struct {
	wall, cpu float64 // ns/op, cpu-ns/op
	boring    bool    // crypto/boring.Enabled()
	openssl   bool    // zhima.SignBackend == "openssl"
}

// signBuild is how the test binary that runs BenchmarkSign is built.
type signBuild string

const (
	pureBuild    signBuild = "pure"         // CGO_ENABLED=0
	boringBuild  signBuild = "boringcrypto" // CGO_ENABLED=1 GOEXPERIMENT=boringcrypto
	opensslBuild signBuild = "openssl"      // CGO_ENABLED=1 -tags openssl
)

// signTestBinary builds this package's test binary with `go test -c` as
// build says, once per run.
func (e *env) signTestBinary(ctx context.Context, build signBuild) (string, error) {
	args := []string{"test", "-c"}
	env := append(baseEnv(), "CGO_ENABLED=0")
	switch build {
	case boringBuild:
		env = append(baseEnv(), "CGO_ENABLED=1", "GOEXPERIMENT=boringcrypto")
	case opensslBuild:
		env = append(baseEnv(), "CGO_ENABLED=1")
		args = append(args, "-tags", "openssl")
	}
	path := filepath.Join(e.tmp, "bench-"+string(build)+".test")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", path, "./internal/bench")...)
	cmd.Dir, cmd.Env = e.opts.Root, env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c ./internal/bench (%s build): %v\n%s", build, err, out)
	}
	return path, nil
}

// goTestSign runs BenchmarkSign in the package's test binary, built as
// build says, as `go test -bench` would.
func (e *env) goTestSign(ctx context.Context, build signBuild) (signResult, error) {
	bin, err := e.signTestBinary(ctx, build)
	if err != nil {
		return signResult{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkSign$", "-test.count", "1",
		"-test.benchtime", e.opts.BenchTime.String())
	cmd.Dir, cmd.Env = filepath.Join(e.opts.Root, "internal", "bench"), baseEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return signResult{}, fmt.Errorf("BenchmarkSign (%s build): %v\n%s", build, err, out.String())
	}
	m := benchLine.FindStringSubmatch(out.String())
	if m == nil {
		return signResult{}, fmt.Errorf("BenchmarkSign: no result in:\n%s", out.String())
	}
	var r signResult
	r.wall, _ = strconv.ParseFloat(m[1], 64)
	if bm := boringMetric.FindStringSubmatch(m[2]); bm != nil {
		v, _ := strconv.ParseFloat(bm[1], 64)
		r.boring = v == 1
	}
	if om := opensslMetric.FindStringSubmatch(m[2]); om != nil {
		v, _ := strconv.ParseFloat(om[1], 64)
		r.openssl = v == 1
	}
	if cm := cpuMetric.FindStringSubmatch(m[2]); cm != nil {
		r.cpu, _ = strconv.ParseFloat(cm[1], 64)
	}
	return r, nil
}

var cpuMetric = regexp.MustCompile(`([\d.]+) cpu-ns/op`)

var boringMetric = regexp.MustCompile(`([\d.]+) boring\b`)

var opensslMetric = regexp.MustCompile(`([\d.]+) openssl\b`)

var opensslF2 = regexp.MustCompile(`(?m)^\+F2:\d+:2048:([\d.]+):([\d.]+)`)

// opensslSign runs `openssl speed -seconds S -mr rsa2048` and returns ns
// per sign (from sign/s, which OpenSSL times in CPU user time). With
// noIFMA it hides AVX-512 IFMA from OpenSSL (OPENSSL_ia32cap, CPUID leaf 7
// EBX bit 21), whose 2048-bit RSA code path needs it.
func (e *env) opensslSign(ctx context.Context, seconds int, noIFMA bool) (float64, error) {
	cmd := exec.CommandContext(ctx, "openssl", "speed", "-seconds", strconv.Itoa(seconds), "-mr", "rsa2048")
	cmd.Env = baseEnv()
	if noIFMA {
		cmd.Env = append(cmd.Env, "OPENSSL_ia32cap=:~0x200000")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("openssl speed: %v\n%s", err, out)
	}
	m := opensslF2.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("openssl speed: no +F2 line in:\n%s", out)
	}
	perSec, _ := strconv.ParseFloat(string(m[1]), 64)
	if perSec == 0 {
		return 0, fmt.Errorf("openssl speed: 0 signs/s")
	}
	return 1e9 / perSec, nil
}

// figSign is the signing cost: pure Go, GOEXPERIMENT=boringcrypto and
// OpenSSL, interleaved round by round. It returns two rows, each against
// OpenSSL. Ratios use CPU time per sign on both sides (Go's cpu-ns/op,
// OpenSSL's own CPU-timed sign/s), so other load on the machine cancels.
func (e *env) figSign(ctx context.Context) ([]*figure, error) {
	pure := &figure{ID: "sign", Name: "RSA2 sign, pure Go vs OpenSSL (CPU µs/sign)", Target: "info"}
	boring := &figure{ID: "sign", Name: "RSA2 sign, GOEXPERIMENT=boringcrypto vs OpenSSL (CPU µs/sign)", Target: "≤ 1.50×"}
	if _, err := exec.LookPath("openssl"); err != nil {
		pure.Skip, boring.Skip = "openssl not found", "openssl not found"
		return []*figure{pure, boring}, nil
	}
	seconds := max(1, int(3*e.opts.Scale+0.5))
	var pw, pc, bw, bc, o, on []float64
	ifma := cpuHas("avx512ifma")
	boringOn := true
	var boringErr error
	e.logf("  (the first boringcrypto build compiles the standard library with cgo; it can take a minute)")
	for round := range e.opts.Rounds {
		steps := []string{"pure", "boring", "openssl"}
		if round%2 == 1 {
			steps = []string{"openssl", "boring", "pure"}
		}
		for _, s := range steps {
			switch s {
			case "pure":
				r, err := e.goTestSign(ctx, pureBuild)
				if err != nil {
					return nil, err
				}
				pw, pc = append(pw, r.wall), append(pc, cpuOr(r))
			case "boring":
				if boringErr != nil {
					continue
				}
				r, err := e.goTestSign(ctx, boringBuild)
				if err != nil {
					boringErr = err
					continue
				}
				boringOn = boringOn && r.boring
				bw, bc = append(bw, r.wall), append(bc, cpuOr(r))
			case "openssl":
				ns, err := e.opensslSign(ctx, seconds, false)
				if err != nil {
					return nil, err
				}
				o = append(o, ns)
				if ifma {
					if ns, err = e.opensslSign(ctx, seconds, true); err != nil {
						return nil, err
					}
					on = append(on, ns)
				}
			}
		}
		e.logf("  round %d: pure Go %.0f ns, boringcrypto %s ns, OpenSSL %.0f ns (CPU per sign)", round+1, pc[len(pc)-1], lastText(bc), o[len(o)-1])
	}
	pure.Zhimaq, pure.Reference = fmt.Sprintf("%.0f µs", median(pc)/1e3), fmt.Sprintf("%.0f µs (OpenSSL)", median(o)/1e3)
	pure.Ratio = median(ratios(pc, o))
	pure.rawf("pure Go cpu-ns/op per round: %s; ns/op (wall): %s", list("%.0f", pc), list("%.0f", pw))
	pure.rawf("OpenSSL ns/sign per round (1e9 / sign/s): %s", list("%.0f", o))
	pure.How = fmt.Sprintf("BenchmarkSign of this package's test binary (`go test -c ./internal/bench` with CGO_ENABLED=0, run with -test.bench ^BenchmarkSign$ -test.benchtime %s): zhima.Sign (RSA2, the test app's 2048-bit key) of "+
		"a %d-byte signing string of a score.brief.get call; it reports ns/op (wall) and cpu-ns/op (getrusage of the test process over the loop). "+
		"Against `openssl speed -seconds %d -mr rsa2048`: 1e9 / sign/s, which OpenSSL measures in CPU user time. %d rounds interleaved; "+
		"ratio = median of per-round cpu-ns/op / OpenSSL ns.", e.opts.BenchTime, len(signingStrOrEmpty()), seconds, e.opts.Rounds)
	if boringErr != nil || len(bc) == 0 {
		boring.Skip = fmt.Sprintf("the boringcrypto build failed: %v", firstLine(fmt.Sprint(boringErr)))
		boring.rawf("%v", boringErr)
		return []*figure{pure, boring}, nil
	}
	boring.Zhimaq, boring.Reference = fmt.Sprintf("%.0f µs", median(bc)/1e3), fmt.Sprintf("%.0f µs (OpenSSL)", median(o)/1e3)
	boring.Ratio = median(ratios(bc, o))
	boring.check(boring.Ratio <= 1.5 && boringOn)
	boring.rawf("boringcrypto cpu-ns/op per round: %s; ns/op (wall): %s; crypto/boring.Enabled: %v", list("%.0f", bc), list("%.0f", bw), boringOn)
	boring.rawf("boringcrypto / pure Go: %.2f×", median(bc)/median(pc))
	boring.How = "the same benchmark in a test binary built with CGO_ENABLED=1 GOEXPERIMENT=boringcrypto, run in the same rounds; the benchmark reports crypto/boring.Enabled() as its `boring` metric."
	if !boringOn {
		boring.whyf("crypto/boring.Enabled() was false: the build did not use BoringCrypto")
	}
	figs := []*figure{pure, boring}
	if len(on) > 0 {
		noIFMA := &figure{ID: "sign", Name: "RSA2 sign, boringcrypto vs OpenSSL without AVX-512 IFMA (CPU µs/sign)", Target: "info"}
		noIFMA.Zhimaq, noIFMA.Reference = fmt.Sprintf("%.0f µs", median(bc)/1e3), fmt.Sprintf("%.0f µs (OpenSSL, IFMA hidden)", median(on)/1e3)
		noIFMA.Ratio = median(ratios(bc, on))
		noIFMA.rawf("OpenSSL with OPENSSL_ia32cap=:~0x200000, ns/sign per round: %s", list("%.0f", on))
		noIFMA.How = "this CPU has avx512ifma (/proc/cpuinfo); the same `openssl speed` run in each round with that bit hidden from OpenSSL, which then " +
			"takes its generic x86-64 path for 2048-bit RSA."
		figs = append(figs, noIFMA)
		if !*boring.Met {
			boring.whyf("OpenSSL signs with AVX-512 IFMA on this CPU: with that bit hidden it takes %.0f µs per sign (%.2f× its own), and boringcrypto is %.2f× that.",
				median(on)/1e3, median(on)/median(o), median(ratios(bc, on)))
		}
	}
	return figs, nil
}

// figSignOpenSSL is the signing cost of the OpenSSL build (-tags openssl,
// zhima.Sign through libcrypto's EVP_DigestSign) against `openssl speed`
// with the same libcrypto, interleaved round by round: the cost of reaching
// OpenSSL from Go (cgo, the digest, a context per signature, base64).
func (e *env) figSignOpenSSL(ctx context.Context) (*figure, error) {
	f := &figure{ID: "sign-openssl", Name: "RSA2 sign, OpenSSL build vs `openssl speed` (CPU µs/sign)", Target: "≤ 1.10×"}
	if _, err := exec.LookPath("openssl"); err != nil {
		f.Skip = "openssl not found"
		return f, nil
	}
	if err := exec.CommandContext(ctx, "pkg-config", "--exists", "libcrypto").Run(); err != nil {
		f.Skip = "no libcrypto to build with (pkg-config --exists libcrypto)"
		return f, nil
	}
	seconds := max(1, int(3*e.opts.Scale+0.5))
	var gw, gc, o []float64
	used := true
	for round := range e.opts.Rounds {
		steps := []string{"go", "openssl"}
		if round%2 == 1 {
			steps = []string{"openssl", "go"}
		}
		for _, s := range steps {
			switch s {
			case "go":
				r, err := e.goTestSign(ctx, opensslBuild)
				if err != nil {
					return nil, err
				}
				used = used && r.openssl
				gw, gc = append(gw, r.wall), append(gc, cpuOr(r))
			case "openssl":
				ns, err := e.opensslSign(ctx, seconds, false)
				if err != nil {
					return nil, err
				}
				o = append(o, ns)
			}
		}
		e.logf("  round %d: OpenSSL build %.0f ns, openssl speed %.0f ns (CPU per sign)", round+1, gc[len(gc)-1], o[len(o)-1])
	}
	f.Zhimaq, f.Reference = fmt.Sprintf("%.0f µs", median(gc)/1e3), fmt.Sprintf("%.0f µs (openssl speed)", median(o)/1e3)
	f.Ratio = median(ratios(gc, o))
	f.check(f.Ratio <= 1.1 && used)
	f.rawf("OpenSSL build cpu-ns/op per round: %s; ns/op (wall): %s; zhima.SignBackend == \"openssl\": %v", list("%.0f", gc), list("%.0f", gw), used)
	f.rawf("openssl speed ns/sign per round (1e9 / sign/s): %s", list("%.0f", o))
	f.How = fmt.Sprintf("BenchmarkSign (as in the rows above) in a test binary built with CGO_ENABLED=1 `go test -c -tags openssl ./internal/bench`, "+
		"run with -test.benchtime %s; it reports zhima.SignBackend == \"openssl\" as its `openssl` metric. Against `openssl speed -seconds %d -mr rsa2048`: "+
		"1e9 / sign/s (CPU user time; its loop signs a ready digest with one reused context). %d rounds interleaved; ratio = median of per-round cpu-ns/op / OpenSSL ns.",
		e.opts.BenchTime, seconds, e.opts.Rounds)
	wallRatio := median(ratios(gw, o))
	f.rawf("OpenSSL build wall ns/op / openssl speed: %.3f×", wallRatio)
	if !used {
		f.whyf("the benchmark reported zhima.SignBackend != \"openssl\": the build did not sign with OpenSSL")
	} else if !*f.Met {
		f.whyf("Measured in wall time per sign the OpenSSL build is %.2f× openssl speed; its CPU per sign is %.2f× its wall time: "+
			"threads besides the signing one (the Go runtime's sysmon, and the Ms that take its P over while each ~0.5 ms cgo call runs) "+
			"burn CPU that openssl speed's single-threaded loop does not.", wallRatio, median(gc)/median(gw))
	}
	return f, nil
}

// cpuHas reports whether /proc/cpuinfo lists flag.
func cpuHas(flag string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			return slices.Contains(strings.Fields(v), flag)
		}
	}
	return false
}

// cpuOr is r's CPU per op, or its wall time when the CPU metric is missing.
func cpuOr(r signResult) float64 {
	if r.cpu > 0 {
		return r.cpu
	}
	return r.wall
}

func signingStrOrEmpty() []byte {
	_, s, _, _ := signInputs()
	return s
}

func lastText(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", xs[len(xs)-1])
}
