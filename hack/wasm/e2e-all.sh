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
# (kill -9 with pods present) on magnetar-wasm, critest's offline set
# (hack/critest.sh; what a wasm handler cannot pass is listed with its
# reason in hack/critest/expect/magnetar-wasm.txt) on magnetar-wasm.
# Knobs: WASM_HANDLERS, SCALE_N, SCALE_N_WAZERO, WASM_SUITES, WASM_CRITEST_SET.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${WASM_WORK:-$OUT/wasm-e2e}
export BRIDGE=${WASM_BRIDGE:-mgbr5} SUBNET=${WASM_SUBNET:-10.241.0.0/16}
# only the wasm daemon (its second handler comes with it)
export HARNESS_SANDBOXERS=${WASM_HARNESS_SANDBOXERS:-magnetar-wasm}
WASM_HANDLERS=${WASM_HANDLERS:-magnetar-wasm magnetar-wasm-wazero}
WASM_SUITES=${WASM_SUITES:-basic scale restart critest}
SCALE_N=${SCALE_N:-200}
SCALE_N_WAZERO=${SCALE_N_WAZERO:-50}
E=$ROOT/hack/wasm/e2e

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  stage_teardown
  stage_end wasm-e2e "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# wasm_suite NAME HANDLER [VAR=VALUE...]
wasm_suite() {
  local name=$1 h=$2
  shift 2
  run_suite "${name}[$h]" e2e "$WORK/logs/wasm-e2e-$name-$h.log" env RUNTIME_HANDLER="$h" "$@" "$E/$name.sh"
}

[ -x "$ROOT/bin/wasm-sandboxer" ] || { echo "FAIL wasm-e2e: bin/wasm-sandboxer missing: run make build"; fail=1; exit 1; }
t0=$SECONDS
stage_start
"$ROOT/hack/wasm/images.sh" import
source "$WORK/etc/harness.env"
for suite in $WASM_SUITES; do
  for h in $WASM_HANDLERS; do
    if [[ " $HANDLERS " != *" $h "* ]]; then
      summary+=("$suite[$h]: skipped: handler not configured (have: $HANDLERS)"); skip=$((skip + 1)); continue
    fi
    case "$suite" in
    basic) wasm_suite basic "$h" ;;
    scale)
      if [ "$h" = magnetar-wasm ]; then wasm_suite scale "$h" N="$SCALE_N" PODS=20
      else wasm_suite scale "$h" N="$SCALE_N_WAZERO" PODS=5; fi ;;
    restart)
      # one daemon serves both handlers: restart it once
      if [ "$h" = magnetar-wasm ]; then wasm_suite restart "$h"; fi ;;
    critest)
      # the engines differ only in how a module runs: critest once
      if [ "$h" = magnetar-wasm ]; then
        run_suite "critest[$h]" critest "$WORK/logs/wasm-critest-$h.log" \
          env CRITEST_SET="${WASM_CRITEST_SET:-offline}" RUNTIME_HANDLER="$h" "$ROOT/hack/critest.sh"
      fi ;;
    *) echo "FAIL wasm-e2e: unknown suite $suite"; fail=$((fail + 1)) ;;
    esac
  done
done
log "wasm-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
