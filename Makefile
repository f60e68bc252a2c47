# zhimaq — see README.md. Only Go is needed for demo, test and build.
GO ?= go
BIN := bin

# A shell test: can the OpenSSL signer (-tags openssl) be built here?
HAVE_LIBCRYPTO = pkg-config --exists libcrypto 2>/dev/null && command -v "$$($(GO) env CC)" >/dev/null 2>&1

.PHONY: all build build-openssl test test-cluster fuzz vet demo chaos bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The commands with the optional OpenSSL signer (-tags openssl: RSA signing
# through libcrypto's EVP_DigestSign, internal/zhima/sign_openssl.go), in
# $(BIN)/openssl/. Needs cgo: a C compiler and libcrypto's headers
# (pkg-config libcrypto; Debian: libssl-dev) to build, libcrypto to run.
build-openssl:
	CGO_ENABLED=1 $(GO) build -tags openssl -o $(BIN)/openssl/ ./cmd/...

# The real worker and enqueue programs against an embedded Redis and the
# local sandbox gateway, with faults on; prints the records as a table.
# DEMO_REDIS=cluster: against a local Redis Cluster instead (redis-server).
demo: build
	./$(BIN)/demo

# Drills on real processes: nothing lost, nothing billed twice.
# e.g. CHAOS_FLAGS="--jobs 500 --drill kill-worker"
chaos: build
	./$(BIN)/chaos $(CHAOS_FLAGS)

# Each figure of bench/RESULTS.md measured beside its reference: about 5-6
# minutes on 2 cores (BENCH_SCALE=0.2 for a quick look). Needs redis-server,
# openssl and gcc (for the boringcrypto build).
bench: build
	./$(BIN)/bench

# The second line compiles the live test against Alipay's sandbox
# (-tags alipaysandbox, README "Against Alipay's sandbox"), which runs only
# with its credentials.
vet:
	$(GO) vet ./...
	$(GO) vet -tags alipaysandbox ./...

# Redis-backed tests use the server at REDIS_URL when one answers, else an
# embedded one. The fuzz targets' seed corpora run as ordinary tests. Where
# libcrypto's headers and a C compiler are found, the signer's package also
# runs in the OpenSSL build (the SDK vectors against OpenSSL); elsewhere that
# step says it is skipped and the target still passes.
test: vet
	$(GO) test -race -count=1 ./...
	@if $(HAVE_LIBCRYPTO); then \
		echo "CGO_ENABLED=1 $(GO) vet -tags openssl ./internal/zhima/"; \
		CGO_ENABLED=1 $(GO) vet -tags openssl ./internal/zhima/ && \
		echo "CGO_ENABLED=1 $(GO) test -tags openssl -race -count=1 ./internal/zhima/" && \
		CGO_ENABLED=1 $(GO) test -tags openssl -race -count=1 ./internal/zhima/; \
	else \
		echo "skipping the OpenSSL signer's tests: no libcrypto headers (pkg-config libcrypto) or no C compiler"; \
	fi

# The test suite against a local Redis Cluster of 3 masters with a replica
# each (internal/withcluster, from redis-server on PATH): every Redis-backed
# test runs on the cluster, none falls back to an embedded Redis.
test-cluster:
	ZHIMAQ_REQUIRE_REDIS=1 $(GO) run ./internal/withcluster $(GO) test -race -count=1 ./...

# Grow the fuzz corpora for a while (FUZZTIME each).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzExtractNode$$' -fuzztime $(FUZZTIME) ./internal/zhima/
	$(GO) test -run '^$$' -fuzz '^FuzzParseResponse$$' -fuzztime $(FUZZTIME) ./internal/zhima/

clean:
	rm -rf $(BIN)
