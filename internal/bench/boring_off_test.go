//go:build !boringcrypto

package bench

func boringEnabled() float64 { return 0 }
