# hack/chaos/chaos.mk: the chaos run (hack/chaos), included by the top-level
# Makefile. For each handler it starts a harness of its own
# (hack/containerd.sh with WORK=_output/chaos/harness, bridge mgbr-chaos,
# cgroup parent /magnetar-chaos), runs pods through CRI while it SIGKILLs
# the sandboxer daemon, its keeper, containerd, a pod's process, or the
# daemon at a kill point (shared/killpoint), restarts what systemd would, and
# checks that CRI's states hold and nothing is left; see hack/chaos/doc.go.
#
#   make chaos         CHAOS_KILLS kills per handler (default 100)
#   make chaos-short   10 kills per handler
#
# Knobs: CHAOS_SEED (0: from the clock; a failure prints the seed that
# replays the choices), CHAOS_SHORT_SEED (chaos-short's), CHAOS_HANDLERS (comma-separated; default
# magnetar-runc,magnetar-wasm,magnetar-gvisor,magnetar-quark,magnetar-vmm,
# magnetar-clh,magnetar-stratovirt: the VM pods boot the guest image, under TCG
# here about 20 s a round; magnetar-clh's and magnetar-stratovirt's on the VMM
# stand-ins of make standins, served by the magnetar-vmm daemon), CHAOS_SHORT_HANDLERS
# (chaos-short's: CHAOS_HANDLERS), CHAOS_FLAGS (-v,
# -keep, -workers N, -witnesses N). Runs as root, under nice -n 19.
# Prints "chaos HANDLER: K kills survived / K tried, P pods lost, L
# leftovers" per handler and a total; exits non-zero on any failure.
#
# make test runs chaos-short (about a minute a handler here, 2 to 5 for
# magnetar-vmm) with a fixed seed,
# CHAOS_SHORT_SEED, so that every run of the suite makes the same choices of
# what to kill and where (the timing against the workload still varies);
# make chaos draws a new seed each run (CHAOS_SEED=0).
.PHONY: chaos chaos-short
CHAOS_KILLS ?= 100
CHAOS_SEED ?= 0
CHAOS_SHORT_SEED ?= 1796339102045134108
CHAOS_HANDLERS ?= magnetar-runc,magnetar-wasm,magnetar-gvisor,magnetar-quark,magnetar-vmm,magnetar-clh,magnetar-stratovirt
CHAOS_SHORT_HANDLERS ?= $(CHAOS_HANDLERS)
CHAOS_FLAGS ?=
CHAOS_BIN := $(CURDIR)/_output/chaos/chaos
CHAOS_RUN = $(GO) build -o $(CHAOS_BIN) ./hack/chaos && nice -n 19 $(CHAOS_BIN) -root $(CURDIR) \
	$(CHAOS_FLAGS)
# the VM pods need the guest image (and the VMM stand-ins: standins builds
# quark's too)
comma := ,
CHAOS_VM = $(filter magnetar-vmm magnetar-clh magnetar-stratovirt,$(subst $(comma), ,$(CHAOS_HANDLERS) $(CHAOS_SHORT_HANDLERS)))
CHAOS_DEPS = build tools images wasm-images standins $(if $(CHAOS_VM),guest-image)

chaos: $(CHAOS_DEPS)
	$(CHAOS_RUN) -handlers $(CHAOS_HANDLERS) -seed $(CHAOS_SEED) -kills $(CHAOS_KILLS)

chaos-short: $(CHAOS_DEPS)
	$(CHAOS_RUN) -handlers $(CHAOS_SHORT_HANDLERS) -seed $(CHAOS_SHORT_SEED) -kills 10

test: chaos-short
