#!/usr/bin/env bash
# hack/wasm/e2e-all.sh: the wasm end-to-end stage of `make test` (make
# wasm-e2e), with guaranteed teardown. Starts its own harness containerd +
# sandboxers (hack/containerd.sh) in WASM_WORK (default _output/wasm-e2e,
# bridge mgbr5, 10.241.0.0/16: apart from the other harnesses), imports the
# wasm images, runs the suites of hack/wasm/e2e, stops everything and ends
# with exactly one summary line:
#   wasm-e2e: N passed, M failed, K skipped
#
# Suites: basic.sh against magnetar-wasm and magnetar-wasm-wazero (one
# daemon serves both), scale.sh (SCALE_N=200 containers at once) on
# magnetar-wasm and (SCALE_N_WAZERO=50) on magnetar-wasm-wazero, restart.sh
# (kill -9 with pods present) on magnetar-wasm.
# Knobs: WASM_HANDLERS, SCALE_N, SCALE_N_WAZERO, WASM_SUITES.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${WASM_WORK:-$OUT/wasm-e2e}
export BRIDGE=${WASM_BRIDGE:-mgbr5} SUBNET=${WASM_SUBNET:-10.241.0.0/16}
# only the wasm daemon (its second handler comes with it)
export HARNESS_SANDBOXERS=${WASM_HARNESS_SANDBOXERS:-magnetar-wasm}
WASM_HANDLERS=${WASM_HANDLERS:-magnetar-wasm magnetar-wasm-wazero}
WASM_SUITES=${WASM_SUITES:-basic scale restart}
SCALE_N=${SCALE_N:-200}
SCALE_N_WAZERO=${SCALE_N_WAZERO:-50}
CD=$ROOT/hack/containerd.sh
E=$ROOT/hack/wasm/e2e

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  log "teardown"
  "$CD" stop >/dev/null 2>&1 || { echo "FAIL teardown: hack/containerd.sh stop failed"; fail=$((fail + 1)); }
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
    echo "FAIL teardown: mounts left below $WORK:"; awk -v w="$WORK/" 'index($2, w) == 1 {print "  " $2}' /proc/mounts
    fail=$((fail + 1))
  fi
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then echo "FAIL wasm-e2e: script error (rc=$rc)"; fail=$((fail + 1)); fi
  echo
  local l
  for l in "${summary[@]}"; do echo "$l"; done
  echo "wasm-e2e: $pass passed, $fail failed, $skip skipped"
  if [ "$fail" -gt 0 ]; then exit 1; fi
  exit 0
}
trap finish EXIT
trap 'exit 130' INT TERM

# add_counts LOG NAME RC: add the last "e2e: N passed, M failed" of LOG
add_counts() {
  local line p f
  line=$(grep -E "^e2e: [0-9]+ passed, [0-9]+ failed" "$1" | tail -1 || true)
  if [ -z "$line" ]; then summary+=("$2: no summary line (exit code $3, see $1)"); fail=$((fail + 1)); return 0; fi
  p=$(sed 's/^e2e: \([0-9]*\) passed.*/\1/' <<<"$line")
  f=$(sed 's/.* \([0-9]*\) failed.*/\1/' <<<"$line")
  if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; line="$line (but exit code $3)"; fi
  pass=$((pass + p)); fail=$((fail + f))
  summary+=("$2: $line")
}
# run_suite NAME HANDLER [VAR=VALUE...]
run_suite() {
  local name=$1 h=$2 rc=0 lf
  shift 2
  lf=$WORK/logs/wasm-e2e-$name-$h.log
  log "wasm suite $name against $h"
  env RUNTIME_HANDLER="$h" "$@" "$E/$name.sh" 2>&1 | tee "$lf" || rc=$?
  add_counts "$lf" "$name[$h]" "$rc"
}

[ -x "$ROOT/bin/wasm-sandboxer" ] || { echo "FAIL wasm-e2e: bin/wasm-sandboxer missing: run make build"; fail=1; exit 1; }
t0=$SECONDS
"$CD" reset >/dev/null 2>&1 || log "reset of $WORK failed; starting anyway"
"$CD" start
"$ROOT/hack/wasm/images.sh" import
source "$WORK/etc/harness.env"
for suite in $WASM_SUITES; do
  for h in $WASM_HANDLERS; do
    if [[ " $HANDLERS " != *" $h "* ]]; then
      summary+=("$suite[$h]: skipped: handler not configured (have: $HANDLERS)"); skip=$((skip + 1)); continue
    fi
    case "$suite" in
    basic) run_suite basic "$h" ;;
    scale)
      if [ "$h" = magnetar-wasm ]; then run_suite scale "$h" N="$SCALE_N" PODS=20
      else run_suite scale "$h" N="$SCALE_N_WAZERO" PODS=5; fi ;;
    restart)
      # one daemon serves both handlers: restart it once
      if [ "$h" = magnetar-wasm ]; then run_suite restart "$h"; fi ;;
    *) echo "FAIL wasm-e2e: unknown suite $suite"; fail=$((fail + 1)) ;;
    esac
  done
done
log "wasm-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
