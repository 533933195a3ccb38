# hack/bench/bench.mk: benchmark targets, included by the top-level Makefile
# (-include hack/bench/bench.mk).
#
#   make bench        every handler that can run here side by side with
#                     containerd's runc shim in one containerd, interleaved
#                     (hack/bench/bench.sh; about 15 minutes): runc shim,
#                     magnetar-runc, magnetar-wasm (wasmtime) and
#                     magnetar-wasm-wazero, magnetar-gvisor, magnetar-vmm
#                     (QEMU; under TCG at most 10 pods at once and one round
#                     of them, said in the table). Sequential and parallel pod start, management
#                     memory and processes per pod, pod kernels (runsc, QEMU)
#                     apart, teardown. Table (summary.md), CSV, JSON and SVGs
#                     (start-latency.svg, memory.svg) under
#                     _output/bench/results/<timestamp>/.
#                     Knobs: N=20 PARALLEL="10 50" PAR_REPS=3 MEM_PODS="1 10 50"
#                     HANDLERS="runc magnetar-runc ..." CAPS="magnetar-vmm=10x1"
#                     BENCH_ARGS=...
#   make profile      where a pod start's time goes, per handler: runc and CNI
#                     timing wrappers + hack/bench/podtimeline (about a minute)
#   make bench-smoke  the same, tiny (2 pods, 2 at once, memory at 1 pod), every
#                     handler but the VM one (bench-vmm-smoke): about a minute,
#                     fails on any error; part of make test.
#
# Both build what they need (make build, the cribench program, test tools and
# images when missing) and run their own harness instance
# (WORK=_output/bench, bridge mgbr2, 10.237.0.0/16), always stopped at the end.
#
#   make bench-vmm        the vmm sandboxer against DESIGN.md §8 (hack/bench/vmm.sh,
#                         hack/bench/vmmbench; about 6 minutes under TCG): the bare
#                         guest boot (marker image) vs RunPodSandbox vs pod +
#                         container through crictl, interleaved, with a breakdown
#                         of the pod start and Magnetar's own share; sandboxer
#                         memory per pod and each VM's host cost at 1/5/10 pods.
#                         Table, CSV, JSON under _output/bench/results/vmm-<time>/,
#                         last line "bench-vmm: ...". Knobs: RUNS=6 MEM_PODS=1,5,10
#                         VMMBENCH_ARGS=... Own harness: WORK=_output/vmm-bench,
#                         bridge mgbr9, 10.247.0.0/16, always stopped at the end.
#   make bench-vmm-smoke  the same, one run of each and memory at 1 pod (about a
#                         minute); fails on any error. Part of make test (vmm.mk).
#   make bench-vmm-pool   the warm pool (hack/bench/vmm.sh with BENCH_POOL=1,
#                         vmmbench -pool): magnetar-vmm with a pool of POOL_SIZE=2
#                         VMs; bare boot vs RunPodSandbox from the pool vs a pod
#                         that boots its own, interleaved; the refill; the memory
#                         of the idle pool's VMs vs idle pods'. pool.txt, pool.json
#                         under _output/bench/results/vmm-<time>/, last line
#                         "bench-vmm-pool: ...". RUNS=6.
#
#   make bench-gvisor, make bench-gvisor-smoke: hack/gvisor/gvisor.mk (bench.sh
#                         with BENCH_GVISOR=1: magnetar-gvisor against bare runsc).
.PHONY: bench bench-smoke profile bench-vmm bench-vmm-smoke bench-vmm-pool

bench: build tools images wasm-images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/bench/bench.sh

bench-smoke: build tools images wasm-images
	BENCH_SMOKE=1 hack/bench/bench.sh

profile:
	hack/bench/profile.sh

bench-vmm: build tools images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/bench/vmm.sh

bench-vmm-smoke: build tools images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) BENCH_SMOKE=1 hack/bench/vmm.sh

bench-vmm-pool: build tools images guest-image
	GUEST_OUT=$(CURDIR)/$(GUEST_OUT) BENCH_POOL=1 hack/bench/vmm.sh
