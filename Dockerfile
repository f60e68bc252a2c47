# syntax=docker/dockerfile:1
# zhimaq image: worker (the entrypoint), enqueue and zhima-sandbox in
# /usr/local/bin of a distroless, non-root image (`--target openssl`: the
# OpenSSL-signing variant, below). docker-compose.yml runs it;
# deploy/compose_test.go checks this file's shape in `make test`.

# Build stage: modules in their own layer, so a source change does not
# download them again. $BUILDPLATFORM/$TARGETARCH let `docker buildx build
# --platform linux/arm64` cross-compile instead of emulating.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/worker ./cmd/enqueue ./cmd/zhima-sandbox

# OpenSSL variant: the same commands built with -tags openssl, which sign
# through libcrypto's EVP_DigestSign (cgo; internal/zhima/sign_openssl.go):
#   docker build --target openssl -t zhimaq:openssl .
# A plain `docker build .` builds the default (last) stage and never these
# two. cgo is built natively for the target platform (no $BUILDPLATFORM
# cross-compiling: buildx emulates other platforms). Debian 12 at both ends,
# so glibc and libssl3 (OpenSSL 3.0) are the ones the binaries were built
# against.
FROM golang:1.26-bookworm AS build-openssl
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
RUN CGO_ENABLED=1 go build -tags openssl -trimpath -ldflags="-s -w" \
    -o /out/ ./cmd/worker ./cmd/enqueue ./cmd/zhima-sandbox

# distroless/base adds glibc and libssl3 (libcrypto.so.3) to what
# distroless/static holds; still no shell, no package manager.
FROM gcr.io/distroless/base-debian12:nonroot AS openssl
COPY --from=build-openssl /out/worker /out/enqueue /out/zhima-sandbox /usr/local/bin/
USER nonroot:nonroot
ENV HTTP_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]

# Final stage, the default image: static binaries need no libc.
# distroless/static carries CA certificates (for https://openapi.alipay.com),
# /etc/passwd with the "nonroot" user (65532) and nothing else: no shell, no
# package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/enqueue /out/zhima-sandbox /usr/local/bin/
USER nonroot:nonroot
# The worker's HTTP listener: /healthz, /readyz, /metrics and, with
# API_TOKENS, the API. HTTP_ADDR binds 127.0.0.1:8080 by default, which
# nothing outside a container can reach, so the image listens on every
# interface. /metrics, /healthz and /readyz answer without authentication
# whoever reaches the port: publish it only to the host or network that
# should (docker-compose.yml publishes it on the host's 127.0.0.1), or set
# HTTP_ADDR=off.
ENV HTTP_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]
