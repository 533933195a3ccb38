# hack/cgroupv2/cgroupv2.mk: the runc and wasm sandboxers on a cgroup-v2-only
# kernel, included by the top-level Makefile.
#
#   make cgroupv2-test   boots the guest kernel (make guest-image) in a QEMU
#                        microvm (TCG) with cgroup_no_v1=all, this machine's /
#                        as its read-only root (virtio-fs, tmpfs overlay), and
#                        runs there the e2e smoke on runc, magnetar-runc and
#                        magnetar-gvisor, e2e/resources.sh on magnetar-runc
#                        and magnetar-quark, the wasm basic suite on
#                        magnetar-wasm and critest (basic) on magnetar-runc
#                        (hack/cgroupv2/run.sh; about an hour here). make
#                        test runs cgroupv2-smoke.
#   make cgroupv2-smoke  the part of make test, in the same VM: what the
#                        cgroup hierarchy decides of a pod: e2e/resources.sh
#                        on magnetar-runc and magnetar-quark (the stand-in
#                        for Quark: pod and container cgroups, memory limit,
#                        Update, OOMKilled, stats) and the wasm basic suite's
#                        cgroup set on magnetar-wasm (stats, Update, memory
#                        limit and OOMKilled, cleanup).
# Either records the "cgroupv2" column of make conformance and ends with
# "cgroupv2: N passed, M failed, K skipped".
.PHONY: cgroupv2-test cgroupv2-smoke

cgroupv2-test: build tools images wasm-images guest-image quark-standin
	QUARK_BIN=$(QUARK_STANDIN) GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/cgroupv2/run.sh

cgroupv2-smoke: build tools images wasm-images guest-image quark-standin
	QUARK_BIN=$(QUARK_STANDIN) GUEST_OUT=$(CURDIR)/$(GUEST_OUT) CGV2_SUITES="resources-magnetar-runc resources-magnetar-quark wasm-cgroups" hack/cgroupv2/run.sh

test: cgroupv2-smoke
