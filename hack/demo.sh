#!/usr/bin/env bash
# hack/demo.sh (make demo): Magnetar on a fresh machine, start to finish.
#   1. builds the test tools if missing (hack/install-tools.sh), Magnetar
#      (make build) and the images (hack/images.sh)
#   2. starts an isolated containerd + runc-sandboxer in a throwaway dir
#      (mktemp under _output; own bridge and subnet)
#   3. runs a pod with a busybox container that prints a greeting, on
#      magnetar-runc and, for comparison, on containerd's runc shim (pods as
#      kubelet makes them by default: a PID namespace per container); and,
#      where the wasm sandboxer and clang-14 are there, a pod whose container
#      is a WebAssembly module (Go, GOOS=wasip1) on magnetar-wasm
#   4. prints the container's output (crictl logs) and a summary: pod start
#      time (runp + create + start) and the processes each pod costs beyond
#      the container's own (magnetar-runc: no shim, no pause; the runc shim
#      handler: containerd-shim-runc-v2 + pause)
#   5. tears everything down (trap), whatever happened
#
#   [DEMO_HANDLERS="magnetar-runc runc magnetar-wasm"] [DEMO_BUILD=0: use bin/ as it is] hack/demo.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DEMO_HANDLERS=${DEMO_HANDLERS:-}
mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/demo.XXXXXX")
CSOCK=$WORK/run/containerd.sock
CRICTL_CONFIG=$WORK/etc/crictl.yaml
export WORK BRIDGE=${DEMO_BRIDGE:-mgbr-demo} SUBNET=${DEMO_SUBNET:-10.239.0.0/16}
crictl() { timeout -k 5 90 "$PREFIX/bin/crictl" -c "$CRICTL_CONFIG" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

teardown() {
  local rc=$?
  set +e
  log "tearing down $WORK"
  "$ROOT/hack/containerd.sh" stop >/dev/null 2>&1
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
    log "mounts left below $WORK: not removing it"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- 1. build -------------------------------------------------------------------
if [ ! -x "$PREFIX/bin/containerd" ] || [ ! -x "$PREFIX/bin/crictl" ] || [ ! -x "$PREFIX/bin/runc" ] || [ ! -x "$PREFIX/cni-bin/bridge" ]; then
  log "test tools missing: hack/install-tools.sh (first time: about 5 minutes)"
  "$ROOT/hack/install-tools.sh"
fi
if [ "${DEMO_BUILD:-1}" = 1 ]; then
  log "make build"
  make -C "$ROOT" --no-print-directory build
fi
[ -x "$ROOT/bin/runc-sandboxer" ] || die "bin/runc-sandboxer missing after make build"
"$ROOT/hack/images.sh"

if [ -z "$DEMO_HANDLERS" ]; then
  DEMO_HANDLERS="magnetar-runc runc"
  if [ -x "$ROOT/bin/wasm-sandboxer" ] && command -v clang-14 >/dev/null; then
    DEMO_HANDLERS+=" magnetar-wasm"
  fi
fi

# --- 2. start -----------------------------------------------------------------------
"$ROOT/hack/containerd.sh" start
source "$WORK/etc/harness.env"
if [[ " $DEMO_HANDLERS " == *" magnetar-wasm"* ]]; then
  "$ROOT/hack/wasm/images.sh" import
fi

# --- 3. one pod per handler ---------------------------------------------------------
declare -A START_MS EXTRA EXTRA_NAMES OUTPUT NOTE
for h in $DEMO_HANDLERS; do
  [[ " $HANDLERS " == *" $h "* ]] || die "handler $h not configured (have: $HANDLERS)"
  mkdir -p "$WORK/demo/$h/logs"
  cat > "$WORK/demo/$h/pod.json" <<EOF
{ "metadata": { "name": "demo-$h", "namespace": "demo", "uid": "demo-$h-$$", "attempt": 1 },
  "hostname": "demo", "log_directory": "$WORK/demo/$h/logs",
  "linux": { "cgroup_parent": "$CGROUP_PARENT",
             "security_context": { "namespace_options": { "pid": 1 } } } }
EOF
  case "$h" in
  magnetar-wasm*) # a Go program built for WASI, run inside the wasm daemon
    cat > "$WORK/demo/$h/ctr.json" <<EOF
{ "metadata": { "name": "hello" }, "image": { "image": "localhost/magnetar/wasm-go:v1" },
  "args": ["hello"], "log_path": "hello.log" }
EOF
    ;;
  *)
    cat > "$WORK/demo/$h/ctr.json" <<EOF
{ "metadata": { "name": "hello" }, "image": { "image": "docker.io/library/busybox:latest" },
  "command": ["sh", "-c", "echo \"Hello from a busybox container on handler $h: \$(uname -sr), hostname \$(hostname), pid \$\$\"; exec sleep 3600"],
  "log_path": "hello.log",
  "linux": { "security_context": { "namespace_options": { "pid": 1 } } } }
EOF
    ;;
  esac
  before=$(harness_pids | sort)
  t0=$(now_ms)
  pod=$(crictl runp -r "$h" "$WORK/demo/$h/pod.json")
  cid=$(crictl create "$pod" "$WORK/demo/$h/ctr.json" "$WORK/demo/$h/pod.json")
  crictl start "$cid" >/dev/null
  START_MS[$h]=$(( $(now_ms) - t0 ))
  for _ in $(seq 1 100); do
    crictl logs "$cid" 2>/dev/null | grep -qi hello && break
    sleep 0.05
  done
  OUTPUT[$h]=$(crictl logs "$cid" 2>&1)
  case "$h" in
  magnetar-wasm*) # the first container compiled the module; a second one of the image does not
    sed 's/"name": "hello"/"name": "hello-again"/; s/"hello.log"/"hello-again.log"/' "$WORK/demo/$h/ctr.json" > "$WORK/demo/$h/ctr2.json"
    t1=$(now_ms)
    cid2=$(crictl create "$pod" "$WORK/demo/$h/ctr2.json" "$WORK/demo/$h/pod.json")
    crictl start "$cid2" >/dev/null
    for _ in $(seq 1 100); do
      crictl logs "$cid2" 2>/dev/null | grep -qi hello && break
      sleep 0.05
    done
    NOTE[$h]="first container compiles the module; a second one (compiled module cached): $(( $(now_ms) - t1 )) ms for create+start+output"
    ;;
  esac
  # the pod's processes beyond the container's own (its PID and descendants)
  # (a wasm container has no process of its own: pid 0)
  cpid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$cid")
  mine=
  if [ -n "$cpid" ] && [ "$cpid" != 0 ]; then mine=$(descendants "$cpid" | sort); fi
  extra=$(comm -13 <(echo "$before") <(harness_pids | sort) | comm -23 - <(echo "$mine"))
  EXTRA[$h]=$(grep -c . <<<"$extra" || true)
  EXTRA_NAMES[$h]=$(for p in $extra; do cat "/proc/$p/comm" 2>/dev/null; done | sort | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')
  echo
  echo "--- crictl logs (handler $h):"
  echo "${OUTPUT[$h]}"
done

# --- 4. summary ----------------------------------------------------------------------
echo
echo "Pods as kubelet makes them by default (a PID namespace per container)."
printf '%-16s %-31s %s\n' "handler" "pod start (runp+create+start)" "processes per pod beyond the container's own"
for h in $DEMO_HANDLERS; do
  printf '%-16s %-31s %s\n' "$h" "${START_MS[$h]} ms" "${EXTRA[$h]}${EXTRA_NAMES[$h]:+ (${EXTRA_NAMES[$h]})}"
done
for h in $DEMO_HANDLERS; do
  if [ -n "${NOTE[$h]:-}" ]; then echo "$h: ${NOTE[$h]}"; fi
done
echo "containerd shims running now: $(our_shims | wc -l) (one per runc-shim pod; magnetar-runc and magnetar-wasm pods need none)"
echo
