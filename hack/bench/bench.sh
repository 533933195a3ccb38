#!/usr/bin/env bash
# hack/bench/bench.sh: Magnetar's sandboxers side by side with containerd's
# runc shim (one shim + one pause per pod), in one run, through CRI.
#
#   hack/bench/bench.sh                 full run (make bench): every handler that
#                                       can run here, about 15 minutes (2 cores,
#                                       VM pods under TCG)
#   BENCH_SMOKE=1 hack/bench/bench.sh   smoke (make bench-smoke, part of make test):
#                                       N=2, PARALLEL=2, MEM_PODS=1, one round, the
#                                       handlers but the VM one (make
#                                       bench-vmm-smoke has it); about a minute,
#                                       exits 1 on any failure
#   BENCH_GVISOR=1 hack/bench/bench.sh  make bench-gvisor: magnetar-gvisor beside the
#                                       runc shim, magnetar-runc and bare runsc
#                                       create/start of the same two containers
#                                       (cribench's bare-runsc floor); HANDLERS="runc
#                                       magnetar-runc magnetar-gvisor bare-runsc",
#                                       N=20, no parallel phase, MEM_PODS="1 10";
#                                       about 4 minutes. With BENCH_SMOKE=1 (make
#                                       bench-gvisor-smoke, part of make test): one
#                                       round, memory at 1 pod
#
# It builds bin/ (make build) and the bench program (hack/bench/cribench),
# checks the test tools and images (hack/install-tools.sh, hack/images.sh when
# missing), starts a private harness instance (hack/containerd.sh, its own
# containerd, sandboxers, CNI bridge and cgroup parent below WORK), runs
# cribench against it and always stops the instance again (trap), also when
# interrupted: cribench removes its pods on SIGINT/SIGTERM and
# `hack/containerd.sh stop` removes anything left.
#
# Knobs (environment):
#   N=20              pods per handler started one after another
#   PARALLEL="10 50"  pod counts started all at once
#   PAR_REPS=3        rounds of each parallel count per handler
#   MEM_PODS="1 10 50" pod counts at which management memory is measured
#   HANDLERS="runc magnetar-runc magnetar-wasm magnetar-wasm-wazero
#            magnetar-gvisor magnetar-vmm"   runtime handlers: the runc shim
#                     (the baseline), and every Magnetar handler that can run
#                     here (magnetar-wasm = wasmtime, magnetar-wasm-wazero =
#                     wazero: one daemon; magnetar-vmm = QEMU, only when the
#                     guest image is built, GUEST_OUT; not magnetar-quark, a
#                     stand-in). Linux handlers' pods run busybox `sleep
#                     3600`, the wasm handlers' the C test module
#                     (localhost/magnetar/wasm-c:v1, `/hello.wasm sleep 3600`)
#   HARNESS_SANDBOXERS  the sandboxer daemons the harness starts (default:
#                     those serving HANDLERS)
#   CAPS="magnetar-vmm=10x1"   HANDLER=PODS[xROUNDS]: the most pods a handler
#                     starts at once in the parallel and memory phases (larger
#                     counts are left out for it) and the rounds of each
#                     parallel count it runs; the report says so (CAP_NOTE).
#                     VM pods under TCG: a boot is ~5 s of a core and a VM
#                     ~0.3 GiB: 50 at once do not fit 2 cores, and 10 at once
#                     take a minute a round (the run stays within 15 minutes)
#   BENCH_ARGS=       extra cribench flags (e.g. "-pid pod", "-settle 5s")
#   WORK=_output/bench BRIDGE=mgbr2 SUBNET=10.237.0.0/16   the harness instance
#   SANDBOXER_LOG_LEVEL=info   (debug adds a log line per request: slower)
#
# Results: $WORK/results/<timestamp>/{summary.md,samples.csv,results.json,
# start-latency.svg,memory.svg} (BENCH_GVISOR=1: results/gvisor-<timestamp>/),
# $WORK/results/latest points at the newest. The last line printed is
# "bench: N passed, M failed" (smoke: "bench-smoke: ...", BENCH_GVISOR=1:
# "bench-gvisor: ..." and "bench-gvisor-smoke: ...").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export WORK=${WORK:-$ROOT/_output/bench}
export BRIDGE=${BRIDGE:-mgbr2} SUBNET=${SUBNET:-10.237.0.0/16}
export SANDBOXER_LOG_LEVEL=${SANDBOXER_LOG_LEVEL:-info}
source "$ROOT/hack/lib.sh"

SMOKE=${BENCH_SMOKE:-0}
GVISOR=${BENCH_GVISOR:-0}
NAME=bench RES_PREFIX=
if [ "$GVISOR" = 1 ]; then
  # the gVisor sandboxer against its floor; the parallel phase is left out
  # (PARALLEL="10" adds it), the floor takes part in the sequential one
  NAME=bench-gvisor RES_PREFIX=gvisor-
  HANDLERS=${HANDLERS:-runc magnetar-runc magnetar-gvisor bare-runsc}
  export HARNESS_SANDBOXERS=${HARNESS_SANDBOXERS:-magnetar-runc magnetar-gvisor}
  PARALLEL=${PARALLEL-} MEM_PODS=${MEM_PODS:-1 10}
fi
# every handler that can run here: the runc shim, magnetar-runc, the wasm
# daemon on each engine, gVisor, and the VM handler (QEMU) when the guest
# image is built; the smoke leaves the VM handler to bench-vmm-smoke
all_handlers() {
  local hs="runc magnetar-runc magnetar-wasm magnetar-wasm-wazero magnetar-gvisor"
  if [ "$SMOKE" != 1 ] && [ -f "$GUEST_OUT/manifest.json" ]; then hs="$hs magnetar-vmm"; fi
  echo "$hs"
}
if [ "$SMOKE" = 1 ]; then
  NAME=$NAME-smoke
  N=2 PAR_REPS=1 MEM_PODS=1
  if [ "$GVISOR" = 1 ]; then N=1 PARALLEL=; else PARALLEL=2; fi
  ARGS=(-settle 500ms -clean-wait 10s -timeout 30s)
else
  N=${N:-20} PARALLEL=${PARALLEL-10 50} PAR_REPS=${PAR_REPS:-3} MEM_PODS=${MEM_PODS:-1 10 50}
  ARGS=()
fi
HANDLERS=${HANDLERS:-$(all_handlers)}
CAPS=${CAPS-magnetar-vmm=10x1}
CAP_NOTE=${CAP_NOTE-VM pods under TCG: a boot takes ~5 s of one of 2 cores, a VM ~0.3 GiB; 10 at once take a minute}
# the daemons serving HANDLERS (an alias is served by another handler's
# daemon: hack/lib.sh daemon_handler), and the aliases for cribench
daemons= served_by=
for h in $HANDLERS; do
  case $h in runc) continue ;; bare-runsc) d=magnetar-gvisor ;; *) d=$(daemon_handler "$h") ;; esac
  if [ "$d" != "$h" ] && [ "$h" != bare-runsc ]; then served_by+="${served_by:+ }$h=$d"; fi
  [[ " $daemons " == *" $d "* ]] || daemons+="${daemons:+ }$d"
done
export HARNESS_SANDBOXERS=${HARNESS_SANDBOXERS:-${daemons:-none}}
has_sandboxer() { [[ " $HARNESS_SANDBOXERS " == *" $1 "* ]]; }
CD=$ROOT/hack/containerd.sh
BENCH_BIN=$OUT/bin/cribench
mkdir -p "$WORK/logs" "$OUT/bin"
LOGF=$WORK/logs/bench.log

pass=0 fail=0 started=0 child=
t0=$SECONDS
ok() { echo "ok   $NAME: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $NAME: $*"; fail=$((fail + 1)); }

# PIDs of live processes whose command line names a path below WORK (after
# a stop: what hack/containerd.sh left behind, e.g. a sandboxer's task keeper,
# which is meant to outlive daemon restarts and is not stopped by it).
our_leftovers() {
  local p
  for p in $(pgrep -f -- "$WORK/" || true); do
    [ "$p" != $$ ] && pid_alive "$p" || continue
    if tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$WORK/"; then echo "$p"; fi
  done
  return 0
}
# kill_leftovers WHY: TERM, then KILL, the processes our_leftovers finds
kill_leftovers() {
  local pids i
  pids=$(our_leftovers)
  [ -n "$pids" ] || return 0
  log "$1: killing $(for i in $pids; do ps -o pid=,args= -p "$i" | cut -c1-110; done)"
  kill -TERM $pids 2>/dev/null || true
  for i in $(seq 1 30); do [ -z "$(our_leftovers)" ] && return 0; sleep 0.1; done
  kill -KILL $(our_leftovers) 2>/dev/null || true
}

finish() {
  local rc=$?
  set +e
  trap - INT TERM
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    # interrupted: let cribench remove its pods, then stop the instance
    kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null
  fi
  if [ "$started" = 1 ]; then
    if "$CD" stop >>"$LOGF" 2>&1; then ok "harness stopped"; else bad "hack/containerd.sh stop failed (see $LOGF)"; fi
    kill_leftovers "left after hack/containerd.sh stop"
    if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
      bad "mounts left below $WORK"
    fi
  fi
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then bad "script error (rc=$rc)"; fi
  echo "$NAME: $pass passed, $fail failed ($((SECONDS - t0)) s)"
  [ "$fail" -eq 0 ] || exit 1
  exit 0
}
trap finish EXIT
trap 'exit 130' INT TERM

# One bench per WORK at a time (make test's smoke and a full run share it).
exec 9>"$WORK/.bench.lock"
if ! flock -n 9; then
  log "another bench runs in $WORK; waiting for it (up to 30 min)"
  flock -w 1800 9 || { bad "another bench holds $WORK/.bench.lock"; exit 1; }
fi

# --- prerequisites
make -s -C "$ROOT" build >>"$LOGF" 2>&1 || { tail -20 "$LOGF" >&2; bad "make build failed"; exit 1; }
(cd "$ROOT" && go build -o "$BENCH_BIN" ./hack/bench/cribench) || { bad "building cribench failed"; exit 1; }
if ! [ -x "$PREFIX/bin/containerd" ] || ! [ -x "$PREFIX/bin/runc" ] || ! [ -x "$PREFIX/cni-bin/bridge" ] ||
  { has_sandboxer magnetar-gvisor && ! [ -x "$PREFIX/bin/runsc" ]; }; then
  "$ROOT/hack/install-tools.sh" || { bad "hack/install-tools.sh failed"; exit 1; }
fi
if ! [ -f "$OUT/images/busybox.tar" ] || ! [ -f "$OUT/images/pause.tar" ]; then
  "$ROOT/hack/images.sh" || { bad "hack/images.sh failed"; exit 1; }
fi
if has_sandboxer magnetar-wasm && ! [ -f "$OUT/images/wasm-c.tar" ]; then
  "$ROOT/hack/wasm/images.sh" >>"$LOGF" 2>&1 || { bad "hack/wasm/images.sh failed (see $LOGF)"; exit 1; }
fi
if has_sandboxer magnetar-vmm && ! [ -f "$GUEST_OUT/manifest.json" ]; then
  bad "magnetar-vmm: no guest image in $GUEST_OUT (make guest-image)"; exit 1
fi

# --- a fresh private instance (reset also stops what an interrupted run left)
"$CD" reset >>"$LOGF" 2>&1 || log "reset of $WORK failed; starting anyway"
kill_leftovers "left by an earlier instance in $WORK"
started=1
if "$CD" start >>"$LOGF" 2>&1; then
  ok "harness started in $WORK ($(grep '^HANDLERS=' "$WORK/etc/harness.env" | cut -d= -f2))"
else
  tail -20 "$LOGF" >&2; bad "hack/containerd.sh start failed (see $LOGF)"; exit 1
fi
if has_sandboxer magnetar-wasm; then
  if "$ROOT/hack/wasm/images.sh" import >>"$LOGF" 2>&1; then ok "wasm images imported"; else bad "importing the wasm images failed (see $LOGF)"; exit 1; fi
fi

# --- the bench, in the background so that a signal reaches the trap at once
log "cribench: N=$N PARALLEL=\"$PARALLEL\" x$PAR_REPS MEM_PODS=\"$MEM_PODS\" HANDLERS=\"${HANDLERS:-auto}\" CAPS=\"$CAPS\""
status=$WORK/logs/cribench.status
results=$WORK/results/$RES_PREFIX$(date +%Y%m%d-%H%M%S)
rm -f "$status"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
"$BENCH_BIN" -work "$WORK" -n "$N" -parallel "$PARALLEL" -par-reps "$PAR_REPS" -mem-pods "$MEM_PODS" \
  -handlers "$HANDLERS" -runc "$PREFIX/bin/runc" -status "$status" -out "$results" -quiet \
  -served-by "$served_by" -cap "$CAPS" -cap-note "$CAP_NOTE" \
  -label "$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)" \
  "${ARGS[@]}" ${BENCH_ARGS:-} </dev/null &
child=$!
rc=0; wait "$child" || rc=$?
child=
line=$(grep -E '^cribench: [0-9]+ passed, [0-9]+ failed' "$status" 2>/dev/null | tail -1 || true)
if [ -z "$line" ]; then
  bad "cribench ended without a summary (exit code $rc)"
else
  p=$(sed 's/^cribench: \([0-9]*\) passed.*/\1/' <<<"$line")
  f=$(sed 's/.* \([0-9]*\) failed.*/\1/' <<<"$line")
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "cribench exit code $rc"; fi
fi
if [ "$SMOKE" != 1 ] && [ -f "$results/summary.md" ]; then
  echo; cat "$results/summary.md"; echo
fi

