#!/usr/bin/env bash
# hack/e2e-all.sh: the end-to-end stage of `make test`, with guaranteed teardown.
# Wipes and starts the harness containerd + sandboxers (hack/containerd.sh) in
# WORK (default _output/e2e), runs the e2e scripts (hack/e2e/run.sh) and/or
# critest (hack/critest.sh) against each handler in RUNTIME_HANDLERS, then
# always stops everything and removes what it mounted (trap), and exits 1 if
# any part failed.
#
#   hack/e2e-all.sh [all|e2e|critest]      (default all)
#   RUNTIME_HANDLERS="magnetar-runc runc"  also validate the scripts against
#                                          containerd's runc shim (default: magnetar-runc)
# Prints per part "e2e: ..." / "critest: ..." and last the combined
# "total: N passed, M failed, K skipped".
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=${1:-all}
case "$MODE" in all|e2e|critest) ;; *) echo "usage: $0 [all|e2e|critest]" >&2; exit 2 ;; esac
RUNTIME_HANDLERS=${RUNTIME_HANDLERS:-magnetar-runc}
export WORK
CD=$ROOT/hack/containerd.sh

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  log "teardown"
  "$CD" stop || { echo "FAIL teardown: hack/containerd.sh stop failed"; fail=$((fail + 1)); }
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
    echo "FAIL teardown: mounts left below $WORK:"; awk -v w="$WORK/" 'index($2, w) == 1 {print "  " $2}' /proc/mounts
    fail=$((fail + 1))
  fi
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then echo "FAIL e2e-all: script error (rc=$rc)"; fail=1; fi
  echo
  local l
  for l in "${summary[@]}"; do echo "$l"; done
  echo "total: $pass passed, $fail failed, $skip skipped"
  if [ "$fail" -gt 0 ]; then exit 1; fi
  exit 0
}
trap finish EXIT
trap 'exit 130' INT TERM

# add_counts LOG PREFIX NAME RC: add the last "PREFIX: N passed, M failed[, K
# skipped]" of LOG; a non-zero RC with no failure counted counts as one
add_counts() {
  local line p f s
  line=$(grep -E "^$2: [0-9]+ passed, [0-9]+ failed" "$1" | tail -1 || true)
  if [ -z "$line" ]; then
    summary+=("$3: no summary line (exit code $4, see $1)"); fail=$((fail + 1)); return 0
  fi
  p=$(sed 's/^[^:]*: \([0-9]*\) passed.*/\1/' <<<"$line")
  f=$(sed 's/.* \([0-9]*\) failed.*/\1/' <<<"$line")
  s=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$line")
  if [ "$4" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; line="$line (but exit code $4)"; fi
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
  summary+=("$3: $line")
}

# every Magnetar handler asked for must have its binary
for h in $RUNTIME_HANDLERS; do
  if bin=$(sandboxer_binary "$h") && [ ! -x "$ROOT/bin/$bin" ]; then
    echo "FAIL e2e-all: bin/$bin missing: run make build"
    fail=$((fail + 1)); exit 1
  fi
done

t0=$SECONDS
# a fresh state; reset also stops what an earlier, interrupted run left
"$CD" reset >/dev/null 2>&1 || log "reset of $WORK failed; starting anyway"
"$CD" start
mkdir -p "$WORK/logs"
for h in $RUNTIME_HANDLERS; do
  if [ "$MODE" != critest ]; then
    log "e2e scripts against $h"
    rc=0; RUNTIME_HANDLER=$h "$ROOT/hack/e2e/run.sh" 2>&1 | tee "$WORK/logs/e2e-all-$h.log" || rc=$?
    add_counts "$WORK/logs/e2e-all-$h.log" e2e "e2e[$h]" "$rc"
  fi
  if [ "$MODE" != e2e ]; then
    log "critest against $h"
    rc=0; RUNTIME_HANDLER=$h "$ROOT/hack/critest.sh" 2>&1 | tee "$WORK/logs/critest-all-$h.log" || rc=$?
    add_counts "$WORK/logs/critest-all-$h.log" critest "critest[$h]" "$rc"
  fi
done
log "e2e-all: $MODE against $RUNTIME_HANDLERS took $((SECONDS - t0)) s (logs in $WORK/logs)"
