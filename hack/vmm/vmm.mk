# hack/vmm/vmm.mk: the vmm sandboxer's end-to-end stage, included by the
# top-level Makefile.
#
#   make vmm-e2e   containerd 2.4 + crictl + critest with magnetar-vmm (every pod
#                  a QEMU VM of the guest image; TCG here) and magnetar-stratovirt
#                  (the same guest on the StratoVirt stand-in), hack/vmm/e2e-all.sh
#                  (VMM_HANDLERS picks the handlers; critest runs on magnetar-vmm,
#                  VMM_CRITEST_HANDLERS=all on every handler);
#                  WORK=_output/vmm-e2e, bridge mgbr6, 10.244.0.0/16. Part of
#                  make test. Ends with "vmm-e2e: N passed, M failed, K skipped"
.PHONY: vmm-e2e

vmm-e2e: build tools images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/vmm/e2e-all.sh

# then the VM benchmark's smoke run (one round, one pod of memory): it must
# keep working, its figures are not checked
test: vmm-e2e bench-vmm-smoke
