#!/usr/bin/env bash
# hack/bench/vmm.sh (make bench-vmm, make bench-vmm-smoke): the vmm
# sandboxer's benchmark, hack/bench/vmmbench, on a harness of its own:
#   - the bare guest boot (the marker image, as hack/bench/vmboot boots it)
#     vs RunPodSandbox on magnetar-vmm vs pod + container through crictl,
#     interleaved, with a breakdown of the pod start (sandboxer and
#     containerd logs, the guest console, the pod's share);
#   - Magnetar's own share of a pod start and RunPodSandbox / bare boot
#     against DESIGN.md §8;
#   - sandboxer + keeper memory per pod at 1/5/10 running pods and each
#     VM's host cost (QEMU + virtiofsd PSS) against its guest memory.
# Results (table.txt, samples.csv, samples.json, summary.txt) in
# _output/bench/results/vmm-<time>/; the last line printed is
# "bench-vmm: ...". About 5 minutes under TCG here; BENCH_SMOKE=1: one run
# of each variant and memory at 1 pod (about a minute), fails on any error.
# Own harness: WORK=_output/vmm-bench, bridge mgbr9, 10.247.0.0/16, only the
# vmm sandboxer; always stopped at the end (also on failure or ^C).
# BENCH_POOL=1 (make bench-vmm-pool): the warm pool benchmark instead
# (vmmbench -pool, pool.go): the daemon keeps POOL_SIZE (2) VMs; last line
# "bench-vmm-pool: ...".
# Knobs: RUNS (6), MEM_PODS ("1,5,10"), VMMBENCH_ARGS (more vmmbench flags,
# e.g. -v), VMM_BENCH_WORK/VMM_BENCH_BRIDGE/VMM_BENCH_SUBNET.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${VMM_BENCH_WORK:-$OUT/vmm-bench}
export BRIDGE=${VMM_BENCH_BRIDGE:-mgbr9} SUBNET=${VMM_BENCH_SUBNET:-10.247.0.0/16}
export HARNESS_SANDBOXERS=magnetar-vmm
# the sandboxer's debug lines (its "pod start" stages) are the breakdown's
export SANDBOXER_LOG_LEVEL=debug VMM_AGENT_LOG_LEVEL=info
CD=$ROOT/hack/containerd.sh
RES=$OUT/bench/results/vmm-$(date +%Y%m%d-%H%M%S)
RUNS=${RUNS:-6}
MEM_PODS=${MEM_PODS:-1,5,10}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then RUNS=1 MEM_PODS=1; fi
pool=()
if [ "${BENCH_POOL:-0}" = 1 ]; then
  export VMM_POOL_SIZE=${POOL_SIZE:-2}
  pool=(-pool "$VMM_POOL_SIZE")
fi

[ -x "$ROOT/bin/vmm-sandboxer" ] || die "bin/vmm-sandboxer missing: make build"
[ -f "$GUEST_OUT/manifest.json" ] && [ -f "$GUEST_OUT/initramfs-marker.cpio" ] || die "no guest image in $GUEST_OUT: make guest-image"
(cd "$ROOT" && go build -o "$OUT/bin/vmmbench" ./hack/bench/vmmbench)
mkdir -p "$RES"

summary=""
finish() {
  local rc=$? left
  set +e
  trap '' INT TERM
  log "teardown (WORK=$WORK)"
  if ! "$CD" stop >>"$RES/harness.log" 2>&1; then
    summary="bench-vmm: FAIL teardown: hack/containerd.sh stop failed (see $RES/harness.log)"; rc=1
  fi
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
    summary="bench-vmm: FAIL teardown: mounts left below $WORK"; rc=1
  fi
  left=$(pgrep -f -- "$WORK/" | while read -r p; do tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-100; echo; done | grep -E 'qemu|virtiofsd' || true)
  if [ -n "$left" ]; then summary="bench-vmm: FAIL teardown: VM processes left: $(echo "$left" | head -3 | tr '\n' ';')"; rc=1; fi
  # the logs the breakdown was read from stay with the results
  cp "$WORK/logs/magnetar-vmm.log" "$WORK/logs/containerd.log" "$RES/" 2>/dev/null || true
  echo
  echo "results: $RES"
  if [ -z "$summary" ]; then
    if [ -s "$RES/summary.txt" ]; then summary=$(cat "$RES/summary.txt")
    elif [ -s "$RES/error.txt" ]; then summary="bench-vmm: FAIL: $(head -1 "$RES/error.txt" | cut -c1-300)"
    else summary="bench-vmm: FAIL: no results (exit code $rc)"; fi
    if [ "$rc" -ne 0 ] && [[ "$summary" != *FAIL* ]]; then summary="bench-vmm: FAIL (exit code $rc): ${summary#bench-vmm: }"; fi
  fi
  echo "$summary"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

log "harness (WORK=$WORK, bridge $BRIDGE, $SUBNET)"
"$CD" reset >>"$RES/harness.log" 2>&1 || true
"$CD" start >>"$RES/harness.log" 2>&1 || { tail -20 "$RES/harness.log" >&2; die "harness did not start"; }

smoke=()
if [ "${BENCH_SMOKE:-0}" = 1 ]; then smoke=(-smoke); fi
read -ra extra <<<"${VMMBENCH_ARGS:-}"
if [ ${#pool[@]} -gt 0 ]; then
  log "vmmbench: the warm pool of $VMM_POOL_SIZE VMs, $RUNS round(s) (results in $RES)"
else
  log "vmmbench: $RUNS run(s) of each variant, memory at $MEM_PODS pods (results in $RES)"
fi
"$OUT/bin/vmmbench" -work "$WORK" -image "$GUEST_OUT" -crictl "$PREFIX/bin/crictl" -out "$RES" \
  -runs "$RUNS" -mem-pods "$MEM_PODS" -commit "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
  "${smoke[@]}" "${pool[@]}" "${extra[@]}"
