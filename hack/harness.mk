# hack/harness.mk: test-harness targets, included by the top-level Makefile.
#
#   make tools     build containerd, runc, crictl/critest, CNI plugins into the
#                  tools cache and link them into _output/prefix
#   make images    busybox / web / pause test images (_output/images)
#   make e2e       start an isolated containerd + sandboxers, run hack/e2e/*
#                  against magnetar-runc and critest's offline set against
#                  containerd's runc shim and magnetar-runc, always tear down
#   make critest   critest only (same setup and teardown)
#   make conformance  the conformance table (hack/conformance.sh) of what
#                  the stages recorded
#   make demo      a pod on magnetar-runc next to one on the runc shim, a wasm
#                  pod on magnetar-wasm, a pod in a QEMU micro-VM on
#                  magnetar-vmm (its guest image built first: make guest-image,
#                  cached) and a pod on gVisor's kernel on magnetar-gvisor
#                  (runsc from make tools), then teardown
#
#   make leaks     the leak counter: CYCLES (100) pod cycles on each handler
#                  (containerd's runc shim, magnetar-runc, -gvisor, -quark on
#                  its stand-in, -vmm), the count of every resource before and
#                  after, one table (hack/leaks.sh; _output/leaks/table.txt)
#   make reliability  make chaos, make leaks, make rpcfuzz and make fuzz one
#                  after another (hours), then one table per handler: kills
#                  survived, pods lost, leaks, RPC fuzz cases, fuzz executions
#                  and failures (hack/reliability.sh;
#                  _output/reliability/table.txt). RELIABILITY_SHORT=1: their
#                  short versions (minutes). Takes the harness lock itself.
#
# Knobs: RUNTIME_HANDLERS="magnetar-runc runc" (e2e), CRITEST_HANDLERS,
# CRITEST_SET=basic|offline (critest), WORK=dir.
.PHONY: tools images e2e critest demo conformance leaks reliability
# for this stage only: the other stages pick their own critest set
CRITEST_SET ?= offline
CRITEST_HANDLERS ?= runc magnetar-runc

tools:
	hack/install-tools.sh

images:
	hack/images.sh

e2e: build tools images
	CRITEST_SET=$(CRITEST_SET) CRITEST_HANDLERS="$(CRITEST_HANDLERS)" hack/e2e-all.sh all

critest: build tools images
	CRITEST_SET=$(CRITEST_SET) CRITEST_HANDLERS="$(CRITEST_HANDLERS)" hack/e2e-all.sh critest

conformance:
	hack/conformance.sh

# tools installs QEMU and what the guest image needs (apt) before guest-image
demo: tools guest-image
	hack/demo.sh

leaks: build tools images wasm-images guest-image standins
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) QUARK_BIN=$(QUARK_STANDIN) hack/leaks.sh

reliability:
	MAKE="$(MAKE)" hack/reliability.sh
