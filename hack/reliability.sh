#!/usr/bin/env bash
# hack/reliability.sh: make reliability: the reliability suite's figures in
# one table per handler. Runs, one after another, each under its own log in
# _output/reliability/ (a failing part does not stop the others):
#
#   chaos    make chaos (CHAOS_KILLS kills per handler; hack/chaos)
#   leaks    hack/leaks.sh (CYCLES create/exec/remove cycles per handler)
#   rpcfuzz  make rpcfuzz (the Controller and Task APIs of running daemons)
#   fuzz     make fuzz (every Go fuzz target for FUZZTIME)
#
# then reads their summary lines and prints, per handler: kills survived /
# tried, pods lost and leftovers (chaos), the resources over their bound and
# the largest growths per cycle (leaks), RPC fuzz cases and failures, and the
# fuzz targets of the handler's own packages with their executions and
# failures (shared/ and hack/ targets count for every handler, in a row of
# their own). The table is also written to _output/reliability/table.txt.
#
#   RELIABILITY_SHORT=1: the short versions (make chaos-short, 10 leak
#   cycles, make rpcfuzz-short, make fuzz-short): minutes, not hours.
#   RELIABILITY_PARTS="chaos leaks rpcfuzz fuzz": run only some.
#
# Exits 1 when any part failed. Takes the harness lock itself.
source "$(dirname "$0")/lib.sh"
# each part's status is read from its .rc file: a failing part, or a grep
# that finds nothing, does not end the script
set +e -uo pipefail
DIR=$OUT/reliability
PARTS=${RELIABILITY_PARTS:-chaos leaks rpcfuzz fuzz}
SHORT=${RELIABILITY_SHORT:-}
MAKE=${MAKE:-make}
LOCK=/tmp/magnetar-harness.lock
mkdir -p "$DIR"

# run PART CMD...: CMD's output to $DIR/PART.log; its status in $DIR/PART.rc
run() {
  local part=$1 t0=$SECONDS rc
  shift
  log "reliability: $part: $*"
  "$@" >"$DIR/$part.log" 2>&1
  rc=$?
  echo "$rc" >"$DIR/$part.rc"
  log "reliability: $part: exit $rc after $((SECONDS - t0)) s ($DIR/$part.log)"
}

for part in $PARTS; do
  case "$part:$SHORT" in
  chaos:) run chaos flock "$LOCK" "$MAKE" chaos ;;
  chaos:*) run chaos flock "$LOCK" "$MAKE" chaos-short ;;
  leaks:) run leaks flock "$LOCK" "$MAKE" leaks ;;
  leaks:*) run leaks flock "$LOCK" env CYCLES=10 "$MAKE" leaks ;;
  rpcfuzz:) run rpcfuzz flock "$LOCK" "$MAKE" rpcfuzz ;;
  rpcfuzz:*) run rpcfuzz flock "$LOCK" "$MAKE" rpcfuzz-short ;;
  fuzz:) run fuzz "$MAKE" fuzz ;;
  fuzz:*) run fuzz "$MAKE" fuzz-short ;;
  *) die "RELIABILITY_PARTS: unknown part $part (chaos, leaks, rpcfuzz, fuzz)" ;;
  esac
done

# the handlers' rows, in this order; a handler none of the parts ran is left out
HANDLERS="magnetar-runc magnetar-wasm magnetar-vmm magnetar-clh magnetar-stratovirt magnetar-gvisor magnetar-quark runc"

# handler_of_pkg DIR: the handler whose packages DIR is of ("" for shared ones)
handler_of_pkg() {
  case "$1" in
  cmd/runc-sandboxer*) echo magnetar-runc ;;
  cmd/wasm-sandboxer*) echo magnetar-wasm ;;
  cmd/vmm-sandboxer* | agent*) echo magnetar-vmm ;;
  cmd/gvisor-sandboxer*) echo magnetar-gvisor ;;
  cmd/quark-sandboxer*) echo magnetar-quark ;;
  *) echo "" ;;
  esac
}

# rpcfuzz names its handlers by the sandboxer's short name (it drives
# Magnetar's daemons only: containerd's runc shim has no row there)
rpcfuzz_name() { case "$1" in magnetar-*) echo "${1#magnetar-}" ;; *) echo "-" ;; esac; }

part_rc() { cat "$DIR/$1.rc" 2>/dev/null || echo "not run"; }

# fuzz_row WHO DIRS-FILTER: "N targets, E executions, F failed" of the fuzz
# table rows (target executions new time result) whose handler is WHO
fuzz_row() {
  local who=$1 label execs res n=0 e=0 f=0
  [ -s "$DIR/fuzz.log" ] || { echo "not run"; return; }
  while read -r label execs _ _ res; do
    [[ "$label" == *.Fuzz* ]] || continue
    [ "$(handler_of_pkg "${label%.Fuzz*}")" = "$who" ] || continue
    n=$((n + 1)) e=$((e + ${execs:-0}))
    [ "$res" = ok ] || f=$((f + 1))
  done <"$DIR/fuzz.log"
  [ "$n" -gt 0 ] || { echo "no targets"; return; }
  echo "$n targets, $e executions, $f failed"
}

# leaks_row HANDLER: the resources over their bound, and the growths per
# cycle that are not 0 (leaks.sh's table: handler resource before after
# per-cycle bound verdict)
leaks_row() {
  local t=$OUT/leaks/table.txt
  [ -s "$t" ] && [ -s "$DIR/leaks.log" ] || { echo "not run"; return; }
  awk -v h="$1" '
    $1 == h { n++; if ($NF != "ok") bad = bad " " $2 "(" $5 "/cycle)"; else if ($5 + 0 != 0) grow = grow " " $2 " " ($5 > 0 ? "+" : "") $5 }
    END {
      if (!n) { print "not in the run"; exit }
      printf "%d resources, %s", n, bad == "" ? "all within bound" : "OVER BOUND:" bad
      if (grow != "") printf "; growth per cycle:%s", grow
      print ""
    }' "$t"
}

{
  echo "reliability per handler (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), $(date -u +%F), ${SHORT:+short versions}${SHORT:-full versions})"
  echo "parts: chaos exit $(part_rc chaos), leaks exit $(part_rc leaks), rpcfuzz exit $(part_rc rpcfuzz), fuzz exit $(part_rc fuzz); logs in $DIR"
  cycles=$(sed -n 's/^leaks per handler after \([0-9]*\) cycles.*/\1/p' "$OUT/leaks/table.txt" 2>/dev/null | head -1)
  for h in $HANDLERS; do
    c=$(grep -h "^chaos $h: " "$DIR/chaos.log" 2>/dev/null | tail -1 | sed "s/^chaos $h: //")
    r=$(grep -h "^rpcfuzz $(rpcfuzz_name "$h"): [0-9]* cases" "$DIR/rpcfuzz.log" 2>/dev/null | tail -1 | sed "s/^rpcfuzz [^:]*: //")
    l=$(leaks_row "$h")
    f=$(fuzz_row "$h")
    if [ -z "$c$r" ] && [[ "$l" == not* ]] && [[ "$f" == no* || "$f" == not* ]]; then continue; fi
    echo
    echo "== $h"
    printf '  %-22s %s\n' "chaos" "${c:-not in the run}"
    printf '  %-22s %s\n' "leaks${cycles:+ ($cycles cycles)}" "$l"
    printf '  %-22s %s\n' "rpc fuzz" "${r:-not in the run}"
    printf '  %-22s %s\n' "fuzz (its packages)" "$f"
  done
  echo
  echo "== shared packages (every handler)"
  printf '  %-22s %s\n' "fuzz" "$(fuzz_row "")"
} | tee "$DIR/table.txt"

failed=0
for part in $PARTS; do
  [ "$(part_rc "$part")" = 0 ] || { echo "reliability: $part failed (exit $(part_rc "$part")): $DIR/$part.log"; failed=1; }
done
exit "$failed"
