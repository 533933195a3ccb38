# hack/gvisor/gvisor.mk: the gVisor sandboxer, included by the top-level
# Makefile (-include hack/gvisor/gvisor.mk).
#
#   make bin/gvisor-sandboxer   the daemon (pure Go); part of make build
#   make gvisor-e2e             containerd 2.4 + crictl + critest with magnetar-gvisor
#                               (every pod a runsc sandbox; runsc from make tools):
#                               every suite, critest's basic focus, hack/gvisor/e2e-all.sh;
#                               WORK=_output/gvisor-e2e, bridge mgbr-gvisor, 10.248.0.0/16.
#                               Ends with "gvisor-e2e: N passed, M failed, K skipped"
#   make gvisor-e2e-short       the same with the short suite set (GVISOR_SHORT=1):
#                               part of make test
.PHONY: bin/gvisor-sandboxer gvisor-e2e gvisor-e2e-short

build: bin/gvisor-sandboxer

bin/gvisor-sandboxer:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/gvisor-sandboxer

gvisor-e2e: build tools images
	hack/gvisor/e2e-all.sh

gvisor-e2e-short: build tools images
	GVISOR_SHORT=1 hack/gvisor/e2e-all.sh

test: gvisor-e2e-short
