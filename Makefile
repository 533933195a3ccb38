# Magnetar: one resident sandboxer daemon per sandbox technology under containerd 2.x.
#
#   make build      every binary into bin/
#   make test       unit + integration + end-to-end (what CI runs)
#   make demo       a busybox pod on magnetar-runc (beside the runc shim) and a wasm pod, then teardown
#   make bench      side-by-side benchmark against containerd's runc shim
#   make lint       gofmt + go vet
#   make fuzz       every Go fuzz target for a minute each (hack/fuzz/fuzz.mk)
#   make clean      remove bin/ and _output/
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/magnetar-runtime/magnetar/shared/daemon.Version=$(VERSION)
SANDBOXERS := runc-sandboxer vmm-sandboxer quark-sandboxer
# helpers the sandboxers run (installed beside them)
HELPERS := magnetar-podinit
BINARIES := $(addprefix bin/,$(SANDBOXERS) $(HELPERS))

.PHONY: all build test unit lint clean $(BINARIES)
all: build

build: $(BINARIES)

$(BINARIES): bin/%:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/$*

# unit tests: no root needed; the root-only ones (namespaces, cgroups, the
# runc integration test with the real runc from `make tools`) skip with a reason
unit:
	GO=$(GO) hack/unit.sh

# what CI runs: the tools first (they install the Debian packages as well:
# gcc for the cgo packages that go vet builds, protoc and its includes for the
# generated-code check, runc for the integration tests), then lint, unit +
# integration, the end-to-end stage (containerd 2.4 + crictl + critest), the
# benchmark smoke run and the package tests
test: tools lint unit e2e bench-smoke $(PACKAGES_TEST)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin _output

-include hack/harness.mk
-include hack/bench/bench.mk
-include deploy/packages.mk
# Go native fuzz targets: make fuzz, and a short run in make test
-include hack/fuzz/fuzz.mk
# wasm-sandboxer (cgo: wasmtime), its images, e2e and bench
-include hack/wasm/wasm.mk
# agent protocol code generation and the guest agent binary
-include hack/agent.mk
# guest image, VM integration tests and the boot benchmark
-include hack/vm/vm.mk
# the vmm sandboxer's end-to-end stage (after the VM tests: it needs the guest image)
-include hack/vmm/vmm.mk
# the gVisor sandboxer (runsc application-kernel pods), its e2e stage and benchmark
-include hack/gvisor/gvisor.mk
# the quark sandboxer's end-to-end stage, against the stand-in for Quark
-include hack/quark/quark.mk
# a real Kubernetes node (kubelet, API server, controllers) on the harness,
# every handler through kubectl (after the VM stages: it runs VM pods too)
-include hack/k8s/k8s.mk
# the RPC fuzzer: every sandboxer daemon's two APIs fed hostile requests
-include hack/rpcfuzz/rpcfuzz.mk
# the chaos run: daemons SIGKILLed under a CRI workload (chaos-short in make test)
-include hack/chaos/chaos.mk
# the runc and wasm sandboxers on a cgroup-v2-only kernel, in a QEMU VM (cgroupv2-smoke in make test)
-include hack/cgroupv2/cgroupv2.mk
