# hack/vmm/vmm.mk: the vmm sandboxer's end-to-end stage, included by the
# top-level Makefile.
#
#   make vmm-e2e   containerd 2.4 + crictl + critest with magnetar-vmm (every pod
#                  a QEMU VM of the guest image; TCG here), magnetar-clh and
#                  magnetar-stratovirt (the same guest on the stand-ins),
#                  hack/vmm/e2e-all.sh (VMM_HANDLERS, VMM_CRITEST_HANDLERS,
#                  VMM_CRITEST_OFFLINE: critest's offline set on each handler);
#                  WORK=_output/vmm-e2e, bridge mgbr6, 10.244.0.0/16. Part of
#                  make test. Ends with "vmm-e2e: N passed, M failed, K skipped"
#   make standins  the stand-ins of VMMs this machine cannot run, for the
#                  tests only (never packaged): _output/standins/cloud-hypervisor
#                  (hack/standins/cloud-hypervisor), _output/standins/stratovirt
#                  (hack/standins/stratovirt)
.PHONY: vmm-e2e standins

standins:
	@mkdir -p _output/standins
	CGO_ENABLED=0 $(GO) build -trimpath -o _output/standins/cloud-hypervisor ./hack/standins/cloud-hypervisor
	CGO_ENABLED=0 $(GO) build -trimpath -o _output/standins/stratovirt ./hack/standins/stratovirt

vmm-e2e: build tools images guest-image standins
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/vmm/e2e-all.sh

# then the VM benchmark's smoke run (one round, one pod of memory): it must
# keep working, its figures are not checked
test: vmm-e2e bench-vmm-smoke
