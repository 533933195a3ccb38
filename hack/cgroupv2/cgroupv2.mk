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
#                        here). make test runs cgroupv2-smoke.
#   make cgroupv2-smoke  the part of make test, in the same VM: what the
#                        cgroup hierarchy decides of a pod: e2e/resources.sh
#                        on magnetar-runc (pod and container cgroups, memory
#                        limit, Update, OOMKilled, stats) and the wasm basic
#                        suite's cgroup set on magnetar-wasm (stats, Update,
#                        memory limit and OOMKilled, cleanup).
# Either records the "cgroupv2" column of make conformance and ends with
# "cgroupv2: N passed, M failed, K skipped".
.PHONY: cgroupv2-test cgroupv2-smoke

cgroupv2-test: build tools images wasm-images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/cgroupv2/run.sh

cgroupv2-smoke: build tools images wasm-images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) CGV2_SUITES="resources-magnetar-runc wasm-cgroups" hack/cgroupv2/run.sh

test: cgroupv2-smoke
