#!/usr/bin/env bash
# hack/bench/profile.sh: where the time of a pod start goes, per handler.
# Starts a private harness instance whose runc (for containerd's runc shim and
# the runc sandboxer alike) and CNI plugins are timing wrappers (one line per
# exec in calls.log), runs the sequential phase of cribench (N pods per handler,
# interleaved), then splits every CRI step into the runc and CNI executions
# inside it and the rest (containerd, shim or sandboxer, ttrpc/gRPC hops) with
# hack/bench/podtimeline. Not part of make test; about a minute.
#
#   [N=10] [HANDLERS="runc magnetar-runc"] hack/bench/profile.sh
#
# The wrappers cost each exec about a millisecond (two `date` calls): the
# absolute figures are a little higher than make bench's, the split is what
# this is for. Results: $WORK/results/profile-<time>/{timeline.txt,calls.log,
# containerd.log, <handler>.log}; WORK=_output/profile, bridge mgbr4.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export WORK=${WORK:-$ROOT/_output/profile}
export BRIDGE=${BRIDGE:-mgbr4} SUBNET=${SUBNET:-10.240.0.0/16}
export SANDBOXER_LOG_LEVEL=debug LOG_LEVEL=info
source "$ROOT/hack/lib.sh"
N=${N:-10}
HANDLERS=${HANDLERS:-runc magnetar-runc}
export HARNESS_SANDBOXERS=${HARNESS_SANDBOXERS:-magnetar-runc}
CD=$ROOT/hack/containerd.sh
started=0
finish() {
  local rc=$?
  set +e
  if [ "$started" = 1 ]; then "$CD" stop >/dev/null 2>&1 || log "hack/containerd.sh stop failed"; fi
  # the sandboxers' task keepers outlive daemon stops by design: end ours
  for p in $(pgrep -f -- "__magnetar_task_keeper $WORK/" || true); do kill "$p" 2>/dev/null; done
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

make -s -C "$ROOT" build >/dev/null
mkdir -p "$OUT/bin"
go build -C "$ROOT" -o "$OUT/bin/cribench" ./hack/bench/cribench
go build -C "$ROOT" -o "$OUT/bin/podtimeline" ./hack/bench/podtimeline
[ -x "$PREFIX/bin/containerd" ] || "$ROOT/hack/install-tools.sh"
[ -f "$OUT/images/busybox.tar" ] || "$ROOT/hack/images.sh"

"$CD" reset >/dev/null 2>&1 || true
res=$WORK/results/profile-$(date +%Y%m%d-%H%M%S)
wrap=$WORK/wrappers
mkdir -p "$res" "$wrap/cni-bin"
calls=$res/calls.log
: >"$calls"
# wrapper NAME REAL OUT: a script that runs REAL with its arguments, stdin and
# stdout untouched, and appends "NAME START END RC CNI_COMMAND CNI_CONTAINERID ARGS..."
wrapper() {
  cat >"$3" <<SH
#!/bin/bash
s=\$(date +%s.%6N)
"$2" "\$@"
rc=\$?
e=\$(date +%s.%6N)
echo "$1 \$s \$e \$rc \${CNI_COMMAND:--} \${CNI_CONTAINERID:--} \$*" >>"$calls"
exit \$rc
SH
  chmod +x "$3"
}
wrapper runc "$PREFIX/bin/runc" "$wrap/runc"
for p in "$PREFIX"/cni-bin/*; do wrapper "cni-$(basename "$p")" "$p" "$wrap/cni-bin/$(basename "$p")"; done

since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
RUNC_BIN=$wrap/runc CNI_BIN=$wrap/cni-bin "$CD" start >/dev/null
started=1
log "cribench: sequential phase, N=$N"
"$OUT/bin/cribench" -work "$WORK" -n "$N" -parallel "" -mem-pods "" -handlers "$HANDLERS" \
  -runc "$PREFIX/bin/runc" -out "$res/cribench" -quiet </dev/null >"$res/cribench.txt" 2>&1 ||
  { tail -20 "$res/cribench.txt"; die "cribench failed"; }
cp "$WORK/logs/containerd.log" "$res/containerd.log"
sb=()
for f in "$WORK"/logs/magnetar-*.log; do
  [ -f "$f" ] || continue
  cp "$f" "$res/"; sb+=("$res/$(basename "$f")")
done
"$OUT/bin/podtimeline" -containerd "$res/containerd.log" -sandboxers "$(IFS=,; echo "${sb[*]}")" \
  -calls "$calls" -since "$since" | tee "$res/timeline.txt"
log "profile in $res"
