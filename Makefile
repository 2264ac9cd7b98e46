# shardlog build, test and run targets. `make run` and `make test` are all a
# fresh machine with the Go toolchain needs.
SHELL     := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO        ?= go
BIN       := bin/shardlog
DATA_DIR  ?= ./shardlog-data
LISTEN    ?= 127.0.0.1:4567
FUZZTIME  ?= 60s
CRASH_SEEDS ?= 20000
CYCLES    ?= 100
SEED      ?= 1

.PHONY: build run test test-short vet bench bench-disk fuzz powerloss-long crash-test crash-test-efo cluster-crash-test sim cluster-run idle-cpu clean

build:
	$(GO) build -o $(BIN) ./cmd/shardlog

run: build
	./$(BIN) serve --listen $(LISTEN) --data-dir $(DATA_DIR)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# Every test, with the race detector, as CI runs it.
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...

# The engine's durable append bandwidth against dd and fio, in turns (needs fio).
bench-disk:
	ROUNDS=$(or $(ROUNDS),10) ./scripts/disk-vs-engine.sh

# Server CPU µs per record, records/s and records per fdatasync for issue 16's
# workloads through HTTP (scripts/bench-server.sh: DURATION, SERVE_ARGS,
# KINESALITE=path/to/kinesalite/cli.js for same-run ratios).
.PHONY: bench-server
bench-server: build
	./scripts/bench-server.sh

# Long randomized power-loss run on the fault-injecting filesystem.
powerloss-long:
	SHARDLOG_POWERLOSS_SEEDS=$(CRASH_SEEDS) $(GO) test -run TestPowerLoss -count=1 -timeout 2h -v ./storage/

# kill -9 loop against the real binary: CYCLES restarts (default 100), SEED.
# `make test` runs the default 100 cycles too.
crash-test:
	SHARDLOG_CRASH_CYCLES=$(CYCLES) SHARDLOG_CRASH_SEED=$(SEED) $(GO) test -count=1 -run TestCrashLoop -v -timeout 3h ./e2e/ \
		| grep -E 'crash-test:|^(--- |ok|FAIL|panic)|_test.go'

# kill -9 loop with enhanced fan-out subscribers: CYCLES restarts, SEED.
# `make test` runs 4 cycles.
crash-test-efo:
	SHARDLOG_EFO_CRASH_CYCLES=$(CYCLES) SHARDLOG_CRASH_SEED=$(SEED) $(GO) test -count=1 -run TestSubscribeCrash -v -timeout 3h ./e2e/ \
		| grep -E 'efo crash test:|^(--- |ok|FAIL|panic)|_test.go'

# kill -9, SIGTERM, proxy partitions and a full disk against three real
# `serve --cluster` processes (e2e TestClusterCrashLoop): CYCLES faults
# (default 100), SEED. `make test` runs 20 cycles.
cluster-crash-test:
	SHARDLOG_CLUSTER_CRASH_CYCLES=$(CYCLES) SHARDLOG_CLUSTER_CRASH_SEED=$(SEED) $(GO) test -count=1 -run 'TestClusterCrashLoop$$' -v -timeout 3h ./e2e/ \
		| grep -E 'cluster-crash-test:|^(--- |ok|FAIL|panic)|_test.go'

# The deterministic cluster simulation (replica/, docs/cluster.md §11): SEEDS
# seeded schedules from SEED. `make test` runs 12.
SEEDS     ?= 1000
sim:
	SHARDLOG_SIM_SEEDS=$(SEEDS) SHARDLOG_SIM_SEED=$(SEED) $(GO) test -count=1 -run 'TestSimulation$$' -v -timeout 3h ./replica/ \
		| grep -E '^(--- |ok|FAIL|panic)|sim_test.go'

# Idle CPU of three replica hosts over loopback TCP with IDLE_GROUPS groups
# (issue 17; BENCHMARKS.md): heartbeats as raft messages, coalesced, then
# coalesced and quiesced, each idle for IDLE_SECONDS.
IDLE_GROUPS  ?= 1000
IDLE_SECONDS ?= 20
idle-cpu:
	SHARDLOG_IDLE_CPU=1 SHARDLOG_IDLE_GROUPS=$(IDLE_GROUPS) SHARDLOG_IDLE_SECONDS=$(IDLE_SECONDS) \
		$(GO) test -count=1 -run 'TestIdleCPU$$' -v -timeout 30m ./replica/ | grep -E '^(--- |ok|FAIL|panic)|idle_cpu_test.go'

# Each fuzz target for FUZZTIME (default 60s).
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Three cluster nodes on 127.0.0.1 (README: Cluster); Ctrl-C stops them.
cluster-run: build
	scripts/cluster-run.sh $(BIN) shardlog-cluster

clean:
	rm -rf bin
