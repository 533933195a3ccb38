# hack/gvisor/gvisor.mk: the gVisor sandboxer, included by the top-level
# Makefile (-include hack/gvisor/gvisor.mk).
#
#   make bin/gvisor-sandboxer   the daemon (pure Go); part of make build
#   make gvisor-e2e             containerd 2.4 + crictl + critest with magnetar-gvisor
#                               (every pod a runsc sandbox; runsc from make tools):
#                               every suite, critest's offline set, hack/gvisor/e2e-all.sh;
#                               WORK=_output/gvisor-e2e, bridge mgbr-gvisor, 10.248.0.0/16.
#                               Ends with "gvisor-e2e: N passed, M failed, K skipped"
#   make gvisor-e2e-short       the same with the short suite set (GVISOR_SHORT=1):
#                               part of make test
#   make bench-gvisor           pod + container start on magnetar-gvisor beside
#                               containerd's runc shim, magnetar-runc and bare
#                               `runsc create/start` of the same two containers (the
#                               floor), interleaved, order rotating; processes and
#                               PSS per pod, the pod's kernel (runsc sandbox, gofers)
#                               counted apart (hack/bench/bench.sh with BENCH_GVISOR=1,
#                               cribench's bare-runsc handler; about 4 minutes).
#                               Table, CSV, JSON under _output/bench/results/gvisor-<time>/.
#                               Knobs: N=20 MEM_PODS="1 10" PARALLEL= (e.g. "10")
#   make bench-gvisor-smoke     the same, one round, memory at 1 pod; part of
#                               make test (after the gVisor stage): it must keep
#                               working, its figures are not checked
.PHONY: bin/gvisor-sandboxer gvisor-e2e gvisor-e2e-short bench-gvisor bench-gvisor-smoke

build: bin/gvisor-sandboxer

bin/gvisor-sandboxer:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/gvisor-sandboxer

gvisor-e2e: build tools images
	hack/gvisor/e2e-all.sh

gvisor-e2e-short: build tools images
	GVISOR_SHORT=1 hack/gvisor/e2e-all.sh

bench-gvisor: build tools images
	BENCH_GVISOR=1 hack/bench/bench.sh

bench-gvisor-smoke: build tools images
	BENCH_GVISOR=1 BENCH_SMOKE=1 hack/bench/bench.sh

# then the gVisor benchmark's smoke run (one round, one pod of memory)
test: gvisor-e2e-short bench-gvisor-smoke
