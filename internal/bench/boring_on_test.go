//go:build boringcrypto

package bench

import "crypto/boring"

func boringEnabled() float64 {
	if boring.Enabled() {
		return 1
	}
	return 0
}
