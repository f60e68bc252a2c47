package config

import (
	"fmt"
	"slices"
)

// MinSecretLen is the shortest CALLBACK_SECRET and API_TOKENS token accepted.
const MinSecretLen = 16

// minSecretChars is the fewest different characters a secret may hold.
const minSecretChars = 6

// makeSecret ends the error for a weak secret.
const makeSecret = "make one with: openssl rand -hex 32"

// publishedSecrets are the tokens and secrets this project's documentation
// has ever shown as examples: anyone may have copied them.
var publishedSecrets = []string{"dev-token-0123456789abcdef"}

// weakSecret says why s is too easy to guess to be a CALLBACK_SECRET or an
// API_TOKENS token, or returns "" when it is not; it never quotes s. It
// refuses a secret that
//
//   - is shorter than MinSecretLen (16) characters;
//   - has fewer than 6 different characters;
//   - is half or more one character;
//   - is mostly predictable: a stretch of it at least half its length
//     follows from what comes before, each character repeating the one p
//     places before (aaaa, abab, abcabc; p up to 32) or stepping from the
//     one before as far as that one stepped from its own (abcd, 1234, 9753;
//     in the order 0-9 then a-z, either case, so 789abc is one run);
//     characters are counted from the first that follows (abcd counts 2);
//   - is one of the examples printed in zhimaq's documentation.
//
// The output of openssl rand -hex 16 (or -hex 32), openssl rand -base64 24
// and a random UUID passes: the chance that one fails is below 1 in 10^9.
// Lengths count bytes.
func weakSecret(s string) string {
	switch {
	case len(s) < MinSecretLen:
		return fmt.Sprintf("is shorter than %d characters", MinSecretLen)
	case slices.Contains(publishedSecrets, s):
		return "is an example from zhimaq's documentation"
	}
	var count [256]int
	distinct := 0
	for i := range len(s) {
		if count[s[i]]++; count[s[i]] == 1 {
			distinct++
		}
		if 2*count[s[i]] >= len(s) {
			return "is half or more one character"
		}
	}
	if distinct < minSecretChars {
		return fmt.Sprintf("has fewer than %d different characters", minSecretChars)
	}
	if 2*predictableRun(s) >= len(s) {
		return "is mostly a run of equal or successive characters or a repeated pattern"
	}
	return ""
}

// predictableRun is the length of s's longest predictable stretch (see
// weakSecret), counted in the characters that follow from the ones before:
// "abab" counts 2 (period 2), "abcd" 2 (step 1), "aaaa" 3 (period 1).
func predictableRun(s string) int {
	b := []byte(s)
	best := 0
	for p := 1; p <= min(len(b)/2, 32); p++ {
		run := 0
		for i := p; i < len(b); i++ {
			if b[i] == b[i-p] {
				run++
				best = max(best, run)
			} else {
				run = 0
			}
		}
	}
	run := 0
	for i := 2; i < len(b); i++ {
		if rank(b[i])-rank(b[i-1]) == rank(b[i-1])-rank(b[i-2]) {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

// rank orders characters for runs: 0-9 are 0-9, a-z and A-Z are 10-35,
// anything else comes after them.
func rank(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'Z':
		return int(c-'A') + 10
	}
	return int(c) + 36
}
