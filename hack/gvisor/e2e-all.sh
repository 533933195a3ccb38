#!/usr/bin/env bash
# hack/gvisor/e2e-all.sh: the gVisor end-to-end stage of `make test` (make
# gvisor-e2e), with guaranteed teardown. Starts its own harness containerd with
# the gVisor sandboxer only (hack/containerd.sh) in GVISOR_WORK (default
# _output/gvisor-e2e, bridge mgbr-gvisor, 10.248.0.0/16: apart from the other
# harnesses), runs the generic e2e scripts of hack/e2e and the gVisor ones of
# hack/gvisor/e2e against magnetar-gvisor, then critest's offline set (what it
# cannot pass: hack/critest/expect/magnetar-gvisor.txt), stops everything and
# ends with exactly one summary line:
#   gvisor-e2e: N passed, M failed, K skipped
#
# Every pod is a runsc sandbox (platform systrap). Not run here, with the
# reason: hack/e2e/resources.sh, whose memory limit and OOM kill are a
# container's host cgroup's: a gVisor container's processes live in the
# sentry, its host cgroup is empty (the pod's sandbox cgroup holds the
# sandbox and is what limits it). Knobs: GVISOR_SUITES (default below),
# GVISOR_SHORT=1 (make test: the short set below, critest still run),
# GVISOR_CRITEST=0 skips critest, GVISOR_CRITEST_SET (offline: every spec that needs no registry, about 90 s here; basic: its basic focus), CYCLES (leak.sh, 10), RUNSC_PLATFORM.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${GVISOR_WORK:-$OUT/gvisor-e2e}
export BRIDGE=${GVISOR_BRIDGE:-mgbr-gvisor} SUBNET=${GVISOR_SUBNET:-10.248.0.0/16}
export HARNESS_SANDBOXERS=magnetar-gvisor
export RUNTIME_HANDLER=magnetar-gvisor
export CYCLES=${CYCLES:-10}
# generic (hack/e2e) and gVisor (hack/gvisor/e2e) suites, in order; leak
# before restart so that it measures a daemon that was not restarted
FULL_SUITES="smoke exitcode tty multi sharedpid pod leak restart keeper sandboxkill"
# the short set (make test): the lifecycle, exec and exit codes, the
# 3-container pod, kill -9 of the daemon and of a sandbox
SHORT_SUITES="smoke exitcode pod restart sandboxkill"
if [ "${GVISOR_SHORT:-0}" = 1 ]; then GVISOR_SUITES=${GVISOR_SUITES:-$SHORT_SUITES}; fi
GVISOR_SUITES=${GVISOR_SUITES:-$FULL_SUITES}

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  stage_teardown
  stage_leftovers runsc '^runsc'
  stage_end gvisor-e2e "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[ -x "$ROOT/bin/gvisor-sandboxer" ] || { echo "FAIL gvisor-e2e: bin/gvisor-sandboxer missing: run make build"; fail=1; exit 1; }
[ -x "$PREFIX/bin/runsc" ] || { echo "FAIL gvisor-e2e: no runsc in $PREFIX/bin: run make tools"; fail=1; exit 1; }
t0=$SECONDS
stage_start
for s in $GVISOR_SUITES; do
  run_suite "$s" e2e "$WORK/logs/gvisor-e2e-$s.log" "$(suite_script gvisor "$s")"
done
if [ "${GVISOR_CRITEST:-1}" = 1 ]; then
  # what a pod in a gVisor sandbox cannot pass: hack/critest/expect/magnetar-gvisor.txt
  run_suite critest critest "$WORK/logs/gvisor-critest.log" \
    env CRITEST_SET="${GVISOR_CRITEST_SET:-offline}" RUNTIME_HANDLER=magnetar-gvisor "$ROOT/hack/critest.sh"
fi
log "gvisor-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
