#!/usr/bin/env bash
# hack/leaks.sh: make leaks: the leak counter of every handler. Starts its own
# harness containerd (LEAKS_WORK, default _output/leaks, bridge mgbr-leaks,
# 10.236.0.0/16) with the sandboxers of LEAKS_HANDLERS, runs hack/e2e/leak.sh
# on each (CYCLES, default 100, create + start + exec + remove cycles of a
# busybox pod, after one warm-up cycle), then stops everything and prints one
# table: per handler and resource the count before and after the cycles, the
# growth per cycle and the bound (0 growth for processes, mounts, netns,
# cgroups, taps, state files, CNI allocations, CRI pods; the stated noise
# bounds of leak.sh for fds, threads and RSS). The table is also written to
# _output/leaks/table.txt. Exits 1 on any growth beyond a bound.
#
#   [LEAKS_HANDLERS="runc magnetar-runc magnetar-wasm magnetar-gvisor magnetar-quark magnetar-vmm
#     magnetar-clh magnetar-stratovirt"]
#   [CYCLES=100] hack/leaks.sh
#
# runc is containerd's runc shim, the reference (its "daemon" is containerd).
# magnetar-vmm needs the guest image (make guest-image), magnetar-clh and
# magnetar-stratovirt the VMM stand-ins too (make standins), magnetar-gvisor runsc
# (make tools), magnetar-quark the stand-in (make quark-standin),
# magnetar-wasm the wasm test images (make wasm-images; imported here): its
# pods run the C test module, inside the daemon.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export WORK=${LEAKS_WORK:-$OUT/leaks/harness}
export BRIDGE=${LEAKS_BRIDGE:-mgbr-leaks} SUBNET=${LEAKS_SUBNET:-10.236.0.0/16}
export CYCLES=${CYCLES:-100}
LEAKS_HANDLERS=${LEAKS_HANDLERS:-"runc magnetar-runc magnetar-wasm magnetar-gvisor magnetar-quark magnetar-vmm magnetar-clh magnetar-stratovirt"}
REPORT=$OUT/leaks/report.txt TABLE=$OUT/leaks/table.txt
mkdir -p "$OUT/leaks"
: > "$REPORT"
export LEAK_REPORT=$REPORT

sbs=""
for h in $LEAKS_HANDLERS; do
  [ "$h" = runc ] && continue
  d=$(daemon_handler "$h")
  [[ " $sbs " == *" $d "* ]] || sbs="$sbs $d"
done
export HARNESS_SANDBOXERS=${sbs# }
[ -n "$HARNESS_SANDBOXERS" ] || export HARNESS_SANDBOXERS=none

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  stage_teardown
  table
  stage_end leaks "$rc"
}
# table: the report as one aligned table
table() {
  [ -s "$REPORT" ] || return 0
  {
    echo "leaks per handler after $CYCLES cycles (commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d))"
    awk 'BEGIN { printf "%-18s %-22s %10s %10s %12s %10s  %s\n", "handler", "resource", "before", "after", "per cycle", "bound", "" }
      { ok = ($5 <= $7) ? "ok" : "LEAK"; if ($4 == $7 && $5 != $4) ok = "LEAK"
        printf "%-18s %-22s %10s %10s %12s %10s  %s\n", $1, $3, $4, $5, $6, $7, ok }' "$REPORT"
  } | tee "$TABLE"
}
trap finish EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
stage_start
case " $LEAKS_HANDLERS" in *" magnetar-wasm"*) "$ROOT/hack/wasm/images.sh" import >/dev/null ;; esac
for h in $LEAKS_HANDLERS; do
  run_suite "leak[$h]" e2e "$WORK/logs/leaks-$h.log" env RUNTIME_HANDLER="$h" "$ROOT/hack/e2e/leak.sh"
done
log "leaks: $CYCLES cycles on $LEAKS_HANDLERS took $((SECONDS - t0)) s (logs in $WORK/logs)"
