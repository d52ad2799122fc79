# iotd — run `make` or `make help` for the list of targets.
GO        ?= go
PKG       ?= ./...
TESTS     ?= .
FUZZTIME  ?= 30s
NETFUZZTIME  ?= 30m
NETFUZZCONNS ?= 8
NETFUZZSEED  ?=
BENCHTIME ?= 1s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)

.PHONY: all help build run test testrace vet fuzz bench stress clean

all: help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/iotd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/iotd ./cmd/iotd

run: build ## start the broker with its defaults (tcp://127.0.0.1:1883, ./data)
	./bin/iotd

vet: ## go vet every package
	$(GO) vet $(PKG)

test: vet ## go vet, then every test with the race detector (fuzz seed corpora included)
	@# -p 1: one package at a time, so the timing-sensitive tests (keep-alive,
	@# SIGKILL rounds) do not compete for the CPU with another package's.
	$(GO) test -race -count=1 -p 1 -run '$(TESTS)' $(PKG)
	@# The broker suite again with persistence on: every ack then waits for the logs.
	IOTD_TEST_PERSISTENCE=1 $(GO) test -race -count=1 -run '$(TESTS)' ./shard

testrace: test

fuzz: ## run every fuzz target for FUZZTIME each (default 30s), then fuzz-net
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -parallel 1 || exit 1; \
	  done; \
	done
	$(MAKE) fuzz-net

.PHONY: fuzz-net
fuzz-net: build ## network fuzzer against a fresh bin/iotd for NETFUZZTIME (default 30m; NETFUZZCONNS, NETFUZZSEED)
	./bin/iotd netfuzz --spawn-broker --duration $(NETFUZZTIME) --connections $(NETFUZZCONNS) \
	  $(if $(NETFUZZSEED),--seed $(NETFUZZSEED)) --conn-log bin/netfuzz-connections.log

bench: ## micro-benchmarks with allocations (BENCHTIME, PKG)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKG)

stress: ## repeat the tests to shake out flakes (TESTS, PKG)
	$(GO) test -race -count=20 -run '$(TESTS)' $(PKG)

.PHONY: release docker
PLATFORMS ?= linux/amd64 linux/arm64
release: ## static binaries for PLATFORMS (linux/amd64, linux/arm64) in dist/, VERSION stamped in, with SHA256SUMS
	@mkdir -p dist
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=dist/iotd-$(VERSION)-$$os-$$arch; \
	  echo "$$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/iotd || exit 1; \
	done
	cd dist && sha256sum iotd-$(VERSION)-* > SHA256SUMS

docker: ## build the container image iotd:VERSION (needs a Docker engine)
	docker build -t iotd:$(VERSION) --build-arg VERSION=$(VERSION) .

clean: ## remove build output
	rm -rf bin dist

.PHONY: bench-micro
bench-micro: ## codec and topic-tree benchmarks with allocations, table into BENCHMARKS.md (COUNT, BENCHTIME)
	bash bench/micro.sh

.PHONY: bench-compare
bench-compare: ## iotd vs mochi-mqtt vs Mosquitto on loopback, tables into BENCHMARKS.md (QUICK=1, ROUNDS, DURATION, CELLS)
	bash bench/compare.sh

.PHONY: bench-durability
bench-durability: ## QoS 1 to persistent sessions per --fsync mode, PUBACK latency, bytes per message, recovery of 1M queued messages; tables into BENCHMARKS.md (QUICK=1, DURATION, SESSIONS, BACKLOG)
	bash bench/durability.sh

.PHONY: soak soak-kill
KILL_CYCLES ?= 20
soak-kill: ## kill -9 soak of the real binary under mixed load, KILL_CYCLES (20) restarts, every acknowledged message checked (KILL_SEED replays a run)
	IOTD_SOAK_CYCLES=$(KILL_CYCLES) IOTD_SOAK_SEED=$(KILL_SEED) $(GO) test -count=1 -v -timeout 60m -run '^TestSoakKill9$$' ./cmd/iotd

soak: soak-kill soak-stall ## the long fault soaks: soak-kill, then soak-stall

.PHONY: soak-stall
STALLED        ?= 1000
STALL_DURATION ?= 60s
soak-stall: ## overload on the real binary: STALLED subscribers (1000) read, then stop reading, STALL_DURATION (60s) per phase at QoS 0 and 1; prints rates and peak RSS
	IOTD_SOAK_STALL=1 IOTD_SOAK_STALL_SUBSCRIBERS=$(STALLED) IOTD_SOAK_STALL_DURATION=$(STALL_DURATION) \
	  $(GO) test -count=1 -timeout 60m -run '^TestStalledSubscribersKeepMemoryBoundedAndPublishersFast$$' -v ./cmd/iotd
