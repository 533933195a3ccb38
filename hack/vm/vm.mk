# hack/vm/vm.mk: the vmm sandboxer's guest image, the VM integration tests and
# the boot benchmark; included by the top-level Makefile.
#
#   make guest-image   kernel (Debian's linux-image-cloud-amd64, downloaded and
#                      extracted, never installed) + initramfs (agent as /init,
#                      static runc with seccomp, modules in dependency order) +
#                      manifest into _output/guest; cached in
#                      ~/.cache/magnetar/guest (hack/vm/guest-image.sh)
#   make vm-test       the VM integration tests (hack/vm/vmtest, the Cloud
#                      Hypervisor stand-in's, and those of cmd/vmm-sandboxer
#                      that boot the image: the vm conformance suite on QEMU
#                      and on Cloud Hypervisor's driver + stand-in; root, QEMU;
#                      TCG here), serially; skipped with a reason where QEMU
#                      cannot run. Ends with "vm: N passed, M failed, K skipped".
#                      Part of make test.
#   make bench-vmboot  boot to agent ready vs. the same VM with a trivial /init,
#                      interleaved, with a breakdown, a busybox container's
#                      first output after ready, and the ttrpc round trip over
#                      virtio-serial (hack/bench/vmboot; RUNS=7 RTT_N=1000;
#                      about 100 s); raw samples in _output/bench/vmboot.json.
#                      Not part of make test.
.PHONY: guest-image vm-test bench-vmboot

GUEST_OUT ?= _output/guest
RUNS ?= 7
RTT_N ?= 1000

guest-image: bin/magnetar-agent
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) AGENT_VERSION=$(VERSION) hack/vm/guest-image.sh

vm-test: bin/magnetar-agent standins
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) AGENT_VERSION=$(VERSION) hack/vm/vm-test.sh

bench-vmboot: guest-image
	@mkdir -p _output/bench
	$(GO) run ./hack/bench/vmboot -image $(CURDIR)/$(GUEST_OUT) -runs $(RUNS) -rtt $(RTT_N) -json _output/bench/vmboot.json

test: vm-test
