# syntax=docker/dockerfile:1
#
# iotd container image: a static binary on a distroless base (no shell, no
# libc, runs as an unprivileged user).
#
#   docker build -t iotd --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run -d --name iotd -p 1883:1883 -p 8083:8083 -p 9234:9234 \
#     -v iotd-data:/data -v "$PWD/passwd:/etc/iotd/passwd:ro" iotd
#
# The image runs `iotd --config /etc/iotd/iotd.toml` (docker/iotd.toml):
# tcp://0.0.0.0:1883, ws://0.0.0.0:8083/mqtt, metrics on :9234, state in
# the /data volume, clients checked against /etc/iotd/passwd. Mount your own
# iotd.toml over it to change anything (TLS on 8883: add the listener and
# mount the certificate and key). README.md, "Docker", has the details.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/iotd ./cmd/iotd \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/iotd /usr/local/bin/iotd
COPY docker/iotd.toml /etc/iotd/iotd.toml
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
# 1883 MQTT, 8883 MQTT over TLS, 8083 MQTT over WebSocket, 9234 metrics
EXPOSE 1883 8883 8083 9234
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/iotd"]
CMD ["--config", "/etc/iotd/iotd.toml"]
