//go:build openssl && !cgo

package zhima

// The openssl tag needs cgo, a C compiler and libcrypto's headers
// (pkg-config libcrypto): build with CGO_ENABLED=1, or without the tag for
// the pure-Go signer. This name is left undefined so that such a build
// fails saying so instead of signing with crypto/rsa behind the tag.
var _ = the_openssl_build_tag_needs_CGO_ENABLED_1
