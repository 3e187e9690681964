# Granary — the two commands a newcomer needs are `make run` and `make test`.

GO       ?= go
BIN      := bin
STORE    ?=
APP_PORT ?= 3000
HTTP_PORT ?= 3500
FUZZTIME ?= 3s
# make chaos: SEED= (default: from the clock, printed) and DURATION= choose the run.
SEED     ?=
DURATION ?= 5m
CHAOS_SMOKE_DURATION ?= 75s
# Packages whose tests run with the race detector (everything with concurrency).
RACE_PKGS := ./...
# Packages whose tests run again with the runtime's invariant checks compiled in
# (single activation and the turn queue's bookkeeping, checked on every turn).
INVARIANT_PKGS := ./actor/... ./reminders/... ./silo/...

.PHONY: all build run test vet fmt-check unit fuzz-smoke chaos chaos-smoke bench bench-gateway bench-store bench-blocks bench-reminders clean proto bench-cluster bench-grpc

all: build

## build: bin/granary and the example apps
build:
	$(GO) build -o $(BIN)/granary ./cmd/granary
	$(GO) build -o $(BIN)/counter-go ./examples/counter-go

## run: the all-in-one dev cluster with the Go Counter example (STORE=redis://127.0.0.1:6379/0 for Redis)
run: build
	@APP_PORT=$(APP_PORT) HTTP_PORT=$(HTTP_PORT) STORE="$(STORE)" ./scripts/run-dev.sh

## test: everything CI checks
test: fmt-check vet unit fuzz-smoke chaos-smoke

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -timeout 9m $(RACE_PKGS)
	$(GO) test -race -tags invariants -timeout 5m $(INVARIANT_PKGS)

## fuzz-smoke: every fuzz target briefly ($(FUZZTIME) each)
fuzz-smoke:
	@FUZZTIME=$(FUZZTIME) ./scripts/fuzz-smoke.sh

## chaos: the chaos suite — a 3-node placement and 3-silo cluster under every nemesis for DURATION (default 5m), checked; needs Redis (see docs/chaos.md)
chaos: build
	$(BIN)/granary chaos run --duration $(DURATION) --nemeses all $(if $(SEED),--seed $(SEED))

## chaos-smoke: a short chaos run with two nemeses (kill -9 and SIGSTOP of silos), part of make test
chaos-smoke: build
	$(BIN)/granary chaos run --duration $(CHAOS_SMOKE_DURATION) --nemeses kill-silo,pause-silo $(if $(SEED),--seed $(SEED))

## bench: the recorded benchmarks (see BENCHMARKS.md); takes several minutes
bench: bench-gateway bench-store bench-blocks bench-reminders bench-cluster bench-grpc

bench-gateway: build
	$(GO) build -o $(BIN)/echoapp ./bench/echoapp
	$(GO) build -o $(BIN)/gatewaybench ./bench/cmd/gatewaybench
	$(BIN)/gatewaybench --granary $(BIN)/granary --echoapp $(BIN)/echoapp

bench-store: build
	$(GO) build -o $(BIN)/echoapp ./bench/echoapp
	$(GO) build -o $(BIN)/storebench ./bench/cmd/storebench
	$(BIN)/storebench --granary $(BIN)/granary --echoapp $(BIN)/echoapp

## bench-blocks: the building blocks through the gateway — state get/save (bbolt and Redis) against the actor invocation rate, service invocation vs direct, pub/sub throughput and delivery latency (about 4 minutes; needs Redis)
bench-blocks: build
	$(GO) build -o $(BIN)/echoapp ./bench/echoapp
	$(GO) build -o $(BIN)/blocksbench ./bench/cmd/blocksbench
	$(BIN)/blocksbench --granary $(BIN)/granary --echoapp $(BIN)/echoapp

bench-reminders: build
	$(GO) build -o $(BIN)/reminderbench ./bench/cmd/reminderbench
	$(BIN)/reminderbench --granary $(BIN)/granary --app $(BIN)/counter-go --http-clients 64

## bench-grpc: actor invocation over Dapr's gRPC API (InvokeActor) against the HTTP route, 1 client on 1 actor and 64 clients over 1,000 actors, in rounds that take turns (about 2 minutes)
bench-grpc: build
	$(GO) build -o $(BIN)/echoapp ./bench/echoapp
	$(GO) build -o $(BIN)/grpcbench ./bench/cmd/grpcbench
	$(BIN)/grpcbench --granary $(BIN)/granary --echoapp $(BIN)/echoapp

clean:
	rm -rf $(BIN)

## proto: regenerate proto/*/*.pb.go (needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH; the output is committed)
proto:
	cd proto && protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative placement/placement.proto silo/silo.proto

## bench-cluster: the cluster's figures — forwarded vs local calls, a 3-silo cluster vs granary dev, silo kill to served again, ring lookup, dissemination to 100 and 500 silos, leader failover (see BENCHMARKS.md; needs Redis)
bench-cluster: build
	$(GO) build -o $(BIN)/echoapp ./bench/echoapp
	$(GO) build -o $(BIN)/clusterbench ./bench/cmd/clusterbench
	$(BIN)/clusterbench --granary $(BIN)/granary --echoapp $(BIN)/echoapp
	$(GO) test -run '^$$' -bench 'OwnerOf|New' -benchmem ./placement/ring/
	$(GO) test -run '^$$' -bench Dissemination -benchtime 1x ./placement/service/
	GRANARY_BENCH_SILOS=500 $(GO) test -run '^$$' -bench Dissemination -benchtime 1x ./placement/service/
	$(GO) test -run '^$$' -bench LeaderFailover -benchtime 30x ./placement/
