# zhimaq — see README.md. Only Go is needed for demo, test and build.
GO ?= go
BIN := bin

.PHONY: all build test fuzz vet demo chaos bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The real worker and enqueue programs against an embedded Redis and the
# local sandbox gateway, with faults on; prints the records as a table.
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
# embedded one. The fuzz targets' seed corpora run as ordinary tests.
test: vet
	$(GO) test -race -count=1 ./...

# Grow the fuzz corpora for a while (FUZZTIME each).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzExtractNode$$' -fuzztime $(FUZZTIME) ./internal/zhima/
	$(GO) test -run '^$$' -fuzz '^FuzzParseResponse$$' -fuzztime $(FUZZTIME) ./internal/zhima/

clean:
	rm -rf $(BIN)
