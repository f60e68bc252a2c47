# syntax=docker/dockerfile:1
# zhimaq image: worker (the entrypoint), enqueue and zhima-sandbox in
# /usr/local/bin of a distroless, non-root image. docker-compose.yml runs it;
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

# Final stage: static binaries need no libc. distroless/static carries CA
# certificates (for https://openapi.alipay.com), /etc/passwd with the
# "nonroot" user (65532) and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/enqueue /out/zhima-sandbox /usr/local/bin/
USER nonroot:nonroot
# The worker's HTTP listener (HTTP_ADDR): /healthz, /readyz, /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]
