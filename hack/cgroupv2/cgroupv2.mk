# hack/cgroupv2/cgroupv2.mk: the runc and wasm sandboxers on a cgroup-v2-only
# kernel, included by the top-level Makefile.
#
#   make cgroupv2-test   boots the guest kernel (make guest-image) in a QEMU
#                        microvm (TCG) with cgroup_no_v1=all, this machine's /
#                        as its read-only root (virtio-fs, tmpfs overlay), and
#                        runs there the e2e smoke on runc and magnetar-runc,
#                        e2e/resources.sh on magnetar-runc, the wasm basic
#                        suite on magnetar-wasm and critest (basic) on
#                        magnetar-runc (hack/cgroupv2/run.sh; about 49 min
#                        here). Records the "cgroupv2" column of make
#                        conformance. Not part of make test. Ends with
#                        "cgroupv2: N passed, M failed, K skipped".
.PHONY: cgroupv2-test

cgroupv2-test: build tools images wasm-images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/cgroupv2/run.sh
