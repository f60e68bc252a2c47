package bench

import (
	"testing"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// BenchmarkSign is zhima.Sign (RSA2) of a realistic signing string; it
// reports crypto/boring.Enabled() as the metric "boring" and whether
// zhima.Sign goes through OpenSSL as "openssl" (1 or 0). The runner runs it
// pure Go, with GOEXPERIMENT=boringcrypto and with -tags openssl.
func BenchmarkSign(b *testing.B) {
	BenchSign(b)
	b.ReportMetric(boringEnabled(), "boring")
	b.ReportMetric(opensslEnabled(), "openssl")
}

func opensslEnabled() float64 {
	if zhima.SignBackend == "openssl" {
		return 1
	}
	return 0
}

// BenchmarkVerify is zhima.Verify (RSA2) of the same string's signature.
func BenchmarkVerify(b *testing.B) { BenchVerify(b) }
