#!/usr/bin/env bash
# hack/quark/e2e-all.sh: the Quark end-to-end stage of `make test` (make
# quark-e2e), with guaranteed teardown. Starts its own harness containerd with
# the quark sandboxer only (hack/containerd.sh) in QUARK_WORK (default
# _output/quark-e2e, bridge mgbr8, 10.247.0.0/16: apart from the other
# harnesses), every pod a sandbox of QUARK_BIN, by default the STAND-IN for
# Quark (hack/standins/quark: Quark itself cannot be built or run here), runs
# the generic e2e scripts of hack/e2e and the Quark ones of hack/quark/e2e
# against magnetar-quark, then critest's offline set (what the stand-in
# cannot pass for a reason inherent to Quark: hack/critest/expect/
# magnetar-quark.txt; any other failure fails); stops everything, checks
# that nothing of the sandboxes is left (processes, mounts, sockets, state)
# and ends with exactly one summary line:
#   quark-e2e: N passed, M failed, K skipped
#
# Knobs: QUARK_SHORT=1 (make test's part: the short suite set, then
# critest), QUARK_SUITES (default below), QUARK_CRITEST=0 skips critest,
# QUARK_CRITEST_SET (offline, or basic), CYCLES (leak.sh, 10), QUARK_BIN (a
# real Quark: then critest's expectations may not hold).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${QUARK_WORK:-$OUT/quark-e2e}
export BRIDGE=${QUARK_BRIDGE:-mgbr8} SUBNET=${QUARK_SUBNET:-10.247.0.0/16}
export HARNESS_SANDBOXERS=magnetar-quark
export RUNTIME_HANDLER=magnetar-quark
export CYCLES=${CYCLES:-10}
export QUARK_BIN
# generic (hack/e2e) and Quark (hack/quark/e2e) suites, in order; leak
# before restart so that it measures a daemon that was not restarted
if [ "${QUARK_SHORT:-0}" = 1 ]; then
  QUARK_SUITES=${QUARK_SUITES:-"smoke mapping exitcode tty resources restart sandboxkill"}
else
  QUARK_SUITES=${QUARK_SUITES:-"smoke mapping exitcode tty resources multi sharedpid leak restart keeper sandboxkill"}
fi

# standins: live processes of the quark binary (the stand-in's sandbox
# processes and commands)
standins() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$(readlink -f "$QUARK_BIN")" ] && pid_alive "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  stage_teardown
  local left sb
  left=$(standins)
  if [ -n "$left" ]; then echo "FAIL teardown: quark processes left: $(echo $left)"; fail=$((fail + 1)); fi
  sb=$WORK/lib/magnetar-quark
  left=$(find "$sb/sandboxes" "$sb/state" "$sb/tasks" -mindepth 1 -maxdepth 1 2>/dev/null)
  if [ -n "$left" ]; then echo "FAIL teardown: sandbox state left:"; echo "$left" | sed 's/^/  /'; fail=$((fail + 1)); fi
  left=$(find "$(run_dir_of quark)" -mindepth 1 2>/dev/null)
  if [ -n "$left" ]; then echo "FAIL teardown: pod run directories left (task sockets, pid files):"; echo "$left" | sed 's/^/  /'; fail=$((fail + 1)); fi
  stage_end quark-e2e "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[ -x "$ROOT/bin/quark-sandboxer" ] || { echo "FAIL quark-e2e: bin/quark-sandboxer missing: run make build"; fail=1; exit 1; }
[ -x "$QUARK_BIN" ] || { echo "FAIL quark-e2e: no quark at $QUARK_BIN: run make quark-standin"; fail=1; exit 1; }
t0=$SECONDS
stage_start
for s in $QUARK_SUITES; do
  run_suite "$s" e2e "$WORK/logs/quark-e2e-$s.log" "$(suite_script quark "$s")"
done
if [ "${QUARK_CRITEST:-1}" = 1 ]; then
  # what a Quark pod cannot pass: hack/critest/expect/magnetar-quark.txt
  run_suite critest critest "$WORK/logs/quark-critest.log" \
    env CRITEST_SET="${QUARK_CRITEST_SET:-offline}" RUNTIME_HANDLER=magnetar-quark "$ROOT/hack/critest.sh"
fi
log "quark-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
