package bench

import "testing"

// BenchmarkSign is zhima.Sign (RSA2) of a realistic signing string; it
// reports crypto/boring.Enabled() as the metric "boring" (1 or 0). The
// runner runs it with and without GOEXPERIMENT=boringcrypto.
func BenchmarkSign(b *testing.B) {
	BenchSign(b)
	b.ReportMetric(boringEnabled(), "boring")
}

// BenchmarkVerify is zhima.Verify (RSA2) of the same string's signature.
func BenchmarkVerify(b *testing.B) { BenchVerify(b) }
