# Magnetar: one resident sandboxer daemon per sandbox technology under containerd 2.x.
#
#   make build      every binary into bin/
#   make test       unit + integration + end-to-end (what CI runs)
#   make demo       a pod with a busybox container on magnetar-runc, then teardown
#   make bench      side-by-side benchmark against containerd's runc shim
#   make lint       gofmt + go vet
#   make clean      remove bin/ and _output/
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/magnetar-runtime/magnetar/shared/daemon.Version=$(VERSION)
SANDBOXERS := runc-sandboxer
BINARIES := $(addprefix bin/,$(SANDBOXERS))

.PHONY: all build test unit integration lint clean $(BINARIES)
all: build

build: $(BINARIES)

$(BINARIES): bin/%:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/$*

# unit tests: no root needed (root-only tests skip themselves with a reason)
unit:
	$(GO) test -count=1 ./...

# integration: real binaries (runc), needs root
integration: build
	$(GO) test -count=1 -tags integration ./...

test: lint unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin _output

-include hack/harness.mk
