#!/usr/bin/env bash
# hack/bench/wasm.sh (make bench-wasm, make bench-wasm-smoke): the wasm
# sandboxer's benchmark, hack/bench/wasmbench:
#   - container start latency, Task.Create -> first line of output, through the
#     Task API directly (a daemon of its own, no containerd) and through crictl
#     (a harness containerd), with a cold and a warm compiled-module cache,
#     for the wasmtime and wazero engines and a C and a Go module;
#   - daemon PSS per idle container at 100, 500 and 1000 containers;
#   - beside both, the same module as one process per container
#     (`wasm-sandboxer run-module`: each process loads the cached module and
#     runs it, the shim model).
# Results (table.txt, samples.csv) in _output/bench/results/wasm-<time>/.
# Own harness: WORK=_output/bench-wasm/harness, bridge mgbr7, 10.243.0.0/16,
# always stopped at the end. BENCH_SMOKE=1: tiny numbers (< 1 minute).
# Knobs: WASMBENCH_ARGS (extra flags for wasmbench, e.g. -n 50 -mem ...).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${WASM_BENCH_WORK:-$OUT/bench-wasm/harness}
export BRIDGE=${WASM_BENCH_BRIDGE:-mgbr7} SUBNET=${WASM_BENCH_SUBNET:-10.243.0.0/16}
export CGROUP_PARENT=${CGROUP_PARENT:-/magnetar-bench-wasm}
# the wasm daemon, and magnetar-runc for the reference rows
export HARNESS_SANDBOXERS=${WASM_BENCH_SANDBOXERS:-magnetar-wasm magnetar-runc}
CD=$ROOT/hack/containerd.sh
RES=$OUT/bench/results/wasm-$(date +%Y%m%d-%H%M%S)
[ -x "$ROOT/bin/wasm-sandboxer" ] || die "bin/wasm-sandboxer missing: make build"
(cd "$ROOT" && go build -o "$OUT/bin/wasmbench" ./hack/bench/wasmbench)
"$ROOT/hack/wasm/images.sh" >/dev/null

finish() {
  local rc=$?
  set +e
  "$CD" stop >/dev/null 2>&1 || log "harness stop failed"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM
"$CD" reset >/dev/null 2>&1 || true
"$CD" start >/dev/null
"$ROOT/hack/wasm/images.sh" import >/dev/null

args=()
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  args=(-n 3 -cold 1 -mem "wasmtime:c:10;wazero:c:10" -shim-mem 5)
fi
read -ra extra <<<"${WASMBENCH_ARGS:-}"
log "wasmbench (results in $RES)"
"$OUT/bin/wasmbench" -bin "$ROOT/bin/wasm-sandboxer" -work "$OUT/bench-wasm/direct" -out "$RES" \
  -go-module "$OUT/wasm/guest.wasm" -c-module "$OUT/wasm/hello.wasm" \
  -crictl "$PREFIX/bin/crictl" -crictl-config "$WORK/etc/crictl.yaml" -harness "$CD" -harness-work "$WORK" \
  -cgroup-parent "$CGROUP_PARENT" "${args[@]}" "${extra[@]}"
{
  echo
  echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
} | tee -a "$RES/table.txt"
log "bench-wasm: results in $RES"
