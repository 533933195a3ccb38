#!/usr/bin/env bash
# hack/demo.sh (make demo): Magnetar on a fresh machine, start to finish.
#   1. builds the test tools if missing (hack/install-tools.sh), Magnetar
#      (make build), the images (hack/images.sh) and, where QEMU is
#      installed, the VM guest image if missing (make guest-image; make demo
#      builds it first anyway)
#   2. starts an isolated containerd + the sandboxers the demo uses in a
#      throwaway dir (mktemp under _output; own bridge and subnet)
#   3. runs a pod with a busybox container that prints a greeting, on
#      magnetar-runc and, for comparison, on containerd's runc shim (pods as
#      kubelet makes them by default: a PID namespace per container); where
#      the wasm sandboxer and clang-14 are there, a pod whose container is a
#      WebAssembly module (Go, GOOS=wasip1) on magnetar-wasm; and where the
#      vmm sandboxer, QEMU and the guest image are there, the busybox pod on
#      magnetar-vmm: a QEMU micro-VM with its own kernel (the greeting shows
#      the guest's kernel release, not the host's), saying how long
#      RunPodSandbox (the VM's boot) took and whether the VM is emulated
#      (TCG, no usable KVM) on this machine; and where the gVisor sandboxer
#      and runsc are there (make tools builds runsc), the busybox pod on
#      magnetar-gvisor: a runsc sandbox, gVisor's application kernel between
#      the container and the host (the greeting shows gVisor's kernel
#      release; `crictl exec dmesg` in the container shows gVisor's boot
#      messages, checked)
#   4. prints the container's output (crictl logs) and a summary: pod start
#      time (runp + create + start, and RunPodSandbox alone) and the
#      processes each pod costs beyond the container's own (magnetar-runc: no
#      shim, no pause; the runc shim handler: containerd-shim-runc-v2 +
#      pause; magnetar-vmm: the VM's QEMU and virtiofsd; magnetar-gvisor:
#      none of ours, the pod's kernel, runsc's sandbox and gofers, apart)
#   5. tears everything down (trap), whatever happened, and fails if a
#      process naming the demo's directory is left
#
#   [DEMO_HANDLERS="magnetar-runc runc magnetar-wasm magnetar-vmm magnetar-gvisor"] [DEMO_BUILD=0: use bin/ as it is] hack/demo.sh
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
  left=$(for p in $(pgrep -f -- "$WORK/" || true); do
    if [ "$p" != $$ ] && pid_alive "$p"; then echo "$p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"; fi
  done)
  if [ -n "$left" ]; then
    log "processes left after teardown:"; echo "$left" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
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
if [ ! -x "$PREFIX/bin/containerd" ] || [ ! -x "$PREFIX/bin/crictl" ] || [ ! -x "$PREFIX/bin/runc" ] || [ ! -x "$PREFIX/cni-bin/bridge" ] ||
  [ ! -x "$PREFIX/bin/runsc" ]; then
  log "test tools missing: hack/install-tools.sh (first time: about 5 minutes)"
  "$ROOT/hack/install-tools.sh"
fi
if [ "${DEMO_BUILD:-1}" = 1 ]; then
  log "make build"
  make -C "$ROOT" --no-print-directory build
fi
[ -x "$ROOT/bin/runc-sandboxer" ] || die "bin/runc-sandboxer missing after make build"
"$ROOT/hack/images.sh"

# vm_missing: why a VM pod cannot run here (empty when it can): the vmm
# sandboxer, QEMU and virtiofsd (as the harness's config names them: the
# defaults), the guest image (built here when missing, as make demo does)
vm_missing() {
  [ -x "$ROOT/bin/vmm-sandboxer" ] || { echo "bin/vmm-sandboxer missing (make build)"; return; }
  command -v qemu-system-x86_64 >/dev/null || { echo "no qemu-system-x86_64 (apt-get install qemu-system-x86)"; return; }
  [ -x /usr/lib/qemu/virtiofsd ] || { echo "no /usr/lib/qemu/virtiofsd (qemu-system-common 7.2)"; return; }
  if [ ! -f "$GUEST_OUT/manifest.json" ]; then
    if [ "${DEMO_BUILD:-1}" = 1 ] && [ "$GUEST_OUT" = "$OUT/guest" ]; then
      log "no guest image in $GUEST_OUT: make guest-image (first time: a few minutes)" >&2
      make -C "$ROOT" --no-print-directory guest-image >&2 || { echo "make guest-image failed"; return; }
    fi
    [ -f "$GUEST_OUT/manifest.json" ] || { echo "no guest image in $GUEST_OUT (make guest-image)"; return; }
  fi
}

if [ -z "$DEMO_HANDLERS" ]; then
  DEMO_HANDLERS="magnetar-runc runc"
  if [ -x "$ROOT/bin/wasm-sandboxer" ] && command -v clang-14 >/dev/null; then
    DEMO_HANDLERS+=" magnetar-wasm"
  fi
  why=$(vm_missing)
  if [ -z "$why" ]; then
    DEMO_HANDLERS+=" magnetar-vmm"
  else
    log "no VM pod in this demo: $why"
  fi
  if [ -x "$ROOT/bin/gvisor-sandboxer" ] && [ -x "$PREFIX/bin/runsc" ]; then
    DEMO_HANDLERS+=" magnetar-gvisor"
  else
    log "no gVisor pod in this demo: bin/gvisor-sandboxer or $PREFIX/bin/runsc missing (make build, make tools)"
  fi
elif [[ " $DEMO_HANDLERS " == *" magnetar-vmm "* ]]; then
  why=$(vm_missing)
  [ -z "$why" ] || die "magnetar-vmm asked for, but: $why"
fi

# --- 2. start -----------------------------------------------------------------------
# only the sandboxers the demo's handlers need (a sandboxer that cannot run
# here, e.g. vmm without QEMU, is not started)
sandboxers=
for h in $DEMO_HANDLERS; do
  case "$h" in
  runc) ;;
  magnetar-wasm*) [[ " $sandboxers " == *" magnetar-wasm "* ]] || sandboxers+=" magnetar-wasm" ;;
  *) sandboxers+=" $h" ;;
  esac
done
sandboxers=${sandboxers# }
HARNESS_SANDBOXERS=${sandboxers:-none} "$ROOT/hack/containerd.sh" start
source "$WORK/etc/harness.env"
if [[ " $DEMO_HANDLERS " == *" magnetar-wasm"* ]]; then
  "$ROOT/hack/wasm/images.sh" import
fi

# vm_accel_note: how the vmm sandboxer runs its VMs here (its "hypervisor
# ready" log line at start names the accelerator it probed for QEMU: kvm or
# tcg), and why
vm_accel_note() {
  local accel why
  accel=$(sed -n 's/.*msg="hypervisor ready" accel=\([a-z]*\) .*hypervisor=qemu.*/\1/p' "$WORK/logs/magnetar-vmm.log" | tail -1)
  case "$accel" in
  kvm) echo "the VM runs under KVM (hardware virtualization)" ;;
  tcg)
    if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then why="the CPU shows no vmx/svm flag in /proc/cpuinfo"
    elif [ ! -e /dev/kvm ]; then why="there is no /dev/kvm"
    else why="KVM is not usable (the sandboxer's probe)"; fi
    echo "the VM is EMULATED on this machine (QEMU TCG, accel=tcg): $why, so QEMU translates every guest instruction in software: that is why a pod takes seconds here. Where KVM works (vm.accel = \"auto\" picks it), the same VM runs on the CPU directly." ;;
  *) echo "accelerator unknown (no \"hypervisor ready\" line for qemu in $WORK/logs/magnetar-vmm.log)" ;;
  esac
}

# argv0 PID: the process's first argument (runsc names its processes
# runsc-sandbox, runsc-gofer)
argv0() { awk -v RS='\0' 'NR == 1 {print; exit}' "/proc/$1/cmdline" 2>/dev/null || true; }

# --- 3. one pod per handler ---------------------------------------------------------
declare -A START_MS RUNP_MS EXTRA EXTRA_NAMES OUTPUT NOTE
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
  RUNP_MS[$h]=$(( $(now_ms) - t0 ))
  cid=$(crictl create "$pod" "$WORK/demo/$h/ctr.json" "$WORK/demo/$h/pod.json")
  crictl start "$cid" >/dev/null
  START_MS[$h]=$(( $(now_ms) - t0 ))
  for _ in $(seq 1 200); do
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
  case "$h" in
  magnetar-vmm*) # the container runs on the VM's kernel
    guest_kernel=$(crictl exec -s "$cid" uname -r 2>/dev/null || echo "?")
    NOTE[$h]="the container runs on the pod VM's own kernel $guest_kernel (the host's is $(uname -r)); RunPodSandbox, which boots the VM, took ${RUNP_MS[$h]} ms"
    NOTE[$h]+=$'\n'"$h: $(vm_accel_note)"
    ;;
  magnetar-gvisor*) # the container runs on gVisor's kernel: its dmesg is gVisor's boot log
    gv_release=$(crictl exec -s "$cid" uname -r 2>&1 || true)
    gv_dmesg=$(crictl exec -s "$cid" dmesg 2>&1 || true)
    echo
    echo "--- crictl exec $h: dmesg (in the container):"
    echo "$gv_dmesg" | head -4
    grep -q gVisor <<<"$gv_dmesg" || die "$h: the container's dmesg does not show gVisor's kernel: $gv_dmesg"
    NOTE[$h]="the container runs on gVisor's application kernel (the pod's runsc sandbox), not on the host's: inside, uname -r says $gv_release (the host's is $(uname -r)) and dmesg begins \"$(head -1 <<<"$gv_dmesg" | sed 's/^\[[ 0-9.]*\] //')\""
    ;;
  esac
  # the pod's processes beyond the container's own (its PID and descendants)
  # (a wasm container has no process of its own: pid 0; a VM's container
  # pid is one in the guest: none of its processes is on the host)
  cpid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$cid")
  mine=
  case "$h" in magnetar-vmm*) cpid= ;; esac
  if [ -n "$cpid" ] && [ "$cpid" != 0 ]; then mine=$(descendants "$cpid" | sort); fi
  extra=$(comm -13 <(echo "$before") <(harness_pids | sort) | comm -23 - <(echo "$mine"))
  case "$h" in magnetar-gvisor*) # the pod's kernel: runsc's sandbox (the container's pid), stubs, gofers
    kernel=$( (echo "$mine"; echo "$extra") | while read -r p; do
      if [ -n "$p" ] && argv0 "$p" | grep -q '^runsc'; then echo "$p"; fi
    done | sort -u)
    extra=$(comm -23 <(echo "$extra") <(echo "$kernel"))
    NOTE[$h]+=$'\n'"$h: the pod's kernel, apart from the processes above: $(grep -c . <<<"$kernel") processes ($(for p in $kernel; do argv0 "$p"; done | sort | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}'))"
    ;;
  esac
  EXTRA[$h]=$(grep -c . <<<"$extra" || true)
  EXTRA_NAMES[$h]=$(for p in $extra; do cat "/proc/$p/comm" 2>/dev/null; done | sort | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')
  echo
  echo "--- crictl logs (handler $h):"
  echo "${OUTPUT[$h]}"
done

# --- 4. summary ----------------------------------------------------------------------
echo
echo "Pods as kubelet makes them by default (a PID namespace per container)."
printf '%-16s %-31s %-15s %s\n' "handler" "pod start (runp+create+start)" "RunPodSandbox" "processes per pod beyond the container's own"
for h in $DEMO_HANDLERS; do
  printf '%-16s %-31s %-15s %s\n' "$h" "${START_MS[$h]} ms" "${RUNP_MS[$h]} ms" "${EXTRA[$h]}${EXTRA_NAMES[$h]:+ (${EXTRA_NAMES[$h]})}"
done
for h in $DEMO_HANDLERS; do
  if [ -n "${NOTE[$h]:-}" ]; then echo "$h: ${NOTE[$h]}"; fi
done
echo "containerd shims running now: $(our_shims | wc -l) (one per runc-shim pod; magnetar-runc, magnetar-wasm, magnetar-vmm and magnetar-gvisor pods need none)"
echo
