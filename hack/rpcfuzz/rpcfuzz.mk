# hack/rpcfuzz/rpcfuzz.mk: the RPC fuzzer (hack/rpcfuzz), included by the
# top-level Makefile. It starts every sandboxer daemon of bin/ itself, each
# in a temporary root of its own (no containerd), and drives its Sandbox API
# (gRPC) and Task API (ttrpc) with hostile and malformed requests; see
# hack/rpcfuzz/doc.go and the README, "RPC fuzzing".
#
#   make rpcfuzz        the table plus RPCFUZZ_CASES random cases per handler
#                       (default 2000; 11 to 33 s a handler, 2 min in all here)
#   make rpcfuzz-short  the table plus 200 random cases per handler: part of
#                       make test (6 to 19 s a handler, about 1 min in all)
#
# Knobs: RPCFUZZ_SEED (0: from the clock; a failure prints the seed that
# replays it), RPCFUZZ_HANDLERS (runc,wasm,vmm,clh,stratovirt,gvisor,quark or all),
# RPCFUZZ_PODS=false (never start a pod: no namespaces, no cgroups),
# RPCFUZZ_FLAGS (more flags: -v, -keep, -log-level debug).
# Prints "rpcfuzz HANDLER: N cases, M failures" per handler, a total, and
# "rpcfuzz: N passed, M failed" for .ci/run. Runs as root, under the harness
# lock (flock /tmp/magnetar-harness.lock make rpcfuzz).
.PHONY: rpcfuzz rpcfuzz-short
RPCFUZZ_CASES ?= 2000
RPCFUZZ_SEED ?= 0
RPCFUZZ_HANDLERS ?= all
RPCFUZZ_PODS ?= true
RPCFUZZ_FLAGS ?=
RPCFUZZ_BIN := $(CURDIR)/_output/rpcfuzz/rpcfuzz
RPCFUZZ_RUN = $(GO) build -o $(RPCFUZZ_BIN) ./hack/rpcfuzz && $(RPCFUZZ_BIN) -seed $(RPCFUZZ_SEED) \
	-handlers $(RPCFUZZ_HANDLERS) -pods=$(RPCFUZZ_PODS) -runc $(CURDIR)/_output/prefix/bin/runc \
	-runsc $(CURDIR)/_output/prefix/bin/runsc -quark $(QUARK_STANDIN) $(RPCFUZZ_FLAGS)

rpcfuzz: build tools quark-standin
	$(RPCFUZZ_RUN) -cases $(RPCFUZZ_CASES)

rpcfuzz-short: build tools quark-standin
	$(RPCFUZZ_RUN) -cases 200

test: rpcfuzz-short
