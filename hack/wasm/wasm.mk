# hack/wasm/wasm.mk: the wasm sandboxer, included by the top-level Makefile
# (-include hack/wasm/wasm.mk).
#
#   make bin/wasm-sandboxer   the daemon (cgo: wasmtime-go links libwasmtime.a); part of make build
#   make wasm-images          the wasm test images (hack/wasm/images.sh): Go and C guests
#   make wasm-e2e             end-to-end through containerd 2.4 + crictl with magnetar-wasm
#                             and magnetar-wasm-wazero (hack/wasm/e2e-all.sh; WORK=_output/wasm-e2e,
#                             bridge mgbr5, 10.241.0.0/16); part of make test. Ends with
#                             "wasm-e2e: N passed, M failed, K skipped"
#   make bench-wasm           start latency (Task API direct and through crictl, cold and warm
#                             module cache) and memory per idle container at 100/500/1000,
#                             beside a process per container (hack/bench/wasm.sh)
#   make bench-wasm-smoke     the same, tiny (about 30 s; fails on any error); part of make test
.PHONY: bin/wasm-sandboxer wasm-images wasm-e2e bench-wasm bench-wasm-smoke

build: bin/wasm-sandboxer

# cgo: gcc first (a fresh machine has none; `make chaos` built this before
# its tools had installed it)
bin/wasm-sandboxer:
	hack/install-tools.sh packages
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/wasm-sandboxer

wasm-images:
	hack/wasm/images.sh

wasm-e2e: build tools images wasm-images
	hack/wasm/e2e-all.sh

test: wasm-e2e bench-wasm-smoke

bench-wasm: build tools images wasm-images
	hack/bench/wasm.sh

bench-wasm-smoke: build tools images wasm-images
	BENCH_SMOKE=1 hack/bench/wasm.sh
