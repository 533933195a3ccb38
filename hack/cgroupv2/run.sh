#!/usr/bin/env bash
# hack/cgroupv2/run.sh (make cgroupv2-test): the runc and wasm sandboxers on a
# cgroup-v2-only kernel. This machine kind is cgroup v1 hybrid, so the suites
# run in a VM: the project's guest kernel (make guest-image: Debian's cloud
# kernel, _output/guest/vmlinuz) in a QEMU microvm (TCG), booted with
# cgroup_no_v1=all, cgroup2 alone at /sys/fs/cgroup.
#
# The guest's root file system is this machine's own / (the root file system
# only, without its submounts), exported READ-ONLY by virtiofsd (QEMU 7.2's
# C virtiofsd, started in a mount namespace of its own holding a read-only
# bind of /), under an overlay whose upper layer is a tmpfs: containerd,
# runc, the CNI plugins and critest are the host's own files; bin/, hack/
# and the images are copied at the start (others rebuild and edit them on
# this machine meanwhile: a file replaced under virtio-fs is a stale file
# handle in the guest). The same share holds a read-write results
# directory. A small initramfs (busybox-static and the modules that
# mounting the root needs) mounts it all and switch_roots to
# hack/cgroupv2/guest.sh, the VM's init, which checks that no cgroup v1
# hierarchy exists (nor can be mounted) and cgroup.controllers lists cpu,
# memory, pids and io, loads the modules CNI needs from the guest kernel's
# module tree (the guest-image cache), starts the harness
# (hack/containerd.sh, WORK on a tmpfs, HARNESS_SANDBOXERS="magnetar-runc
# magnetar-wasm", magnetar-quark on the stand-in for Quark when bin/ has
# quark-sandboxer and QUARK_BIN the stand-in, magnetar-gvisor when bin/ has
# gvisor-sandboxer and make tools runsc, bridge mgbr-cgv2 in the VM's own
# network stack), imports the wasm images and runs CGV2_SUITES:
#   smoke-runc                hack/e2e/smoke.sh on containerd's runc shim (baseline)
#   smoke-HANDLER             hack/e2e/smoke.sh (pod cgroups, stats) on magnetar-runc
#                             or magnetar-gvisor
#   resources-HANDLER         hack/e2e/resources.sh (memory limit, Update, OOMKilled, stats)
#                             on magnetar-runc or magnetar-quark
#   wasm-basic                hack/wasm/e2e/basic.sh on magnetar-wasm (memory limit, OOMKilled,
#                             stats, Update), its stop bounds an emulated guest's
#                             (CGV2_STOP_MAX_MS 60000, CGV2_KILL_MAX_MS 2000)
#   wasm-cgroups              the same suite's cgroup set (WASM_BASIC_SET=cgroups)
#   critest                   hack/critest.sh (basic set) on magnetar-runc
# then stops the harness (a failure if a pod cgroup, mount or process is
# left: "teardown") and powers off.
#
# Results: one line per suite; each handler's total is recorded for `make
# conformance` (hack/conformance.sh, suite cgroupv2). Console, results and
# the guest's suite and daemon logs: _output/cgroupv2/. Ends with exactly
# one line
#   cgroupv2: N passed, M failed, K skipped
# and exits 1 on any failure. Nothing is left behind: QEMU, virtiofsd, its
# mount namespace and the temp dir go in a trap.
#
# Knobs: CGV2_SUITES (default: smoke-runc smoke-magnetar-runc
# resources-magnetar-runc resources-magnetar-quark smoke-magnetar-gvisor
# wasm-basic critest), CGV2_MEM (MiB, 3072), CGV2_CPUS (2),
# CGV2_TIMEOUT (s, 5400: the VM is killed after it), CGV2_STOP_MAX_MS (the
# wasm suite's bound on a stop through crictl, 60000 under TCG), GUEST_OUT
# (the kernel, _output/guest), GUEST_CACHE (its modules,
# ~/.cache/magnetar/guest), QEMU, VIRTIOFSD, CGV2_KEEP_TMP=1 (keep the temp dir).
# Time: about 55 minutes under TCG on 2 cores (boot and harness start 1.5
# to 2.5 min, smoke 4.5 to 6 min per handler, resources 1.3 per handler,
# wasm basic 15, its cgroup set 2, critest basic 10.5, harness stop 1 to
# 6); make cgroupv2-smoke about 7. About 30 s of it on the host. Root,
# QEMU 7.2 (qemu-system-x86), busybox-static, cpio, kmod.
source "$(dirname "$0")/../lib.sh"

GUEST_OUT=${GUEST_OUT:-$OUT/guest}
GUEST_CACHE=${GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/magnetar/guest}
QEMU=${QEMU:-/usr/bin/qemu-system-x86_64}
VIRTIOFSD=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
CGV2_SUITES=${CGV2_SUITES:-smoke-runc smoke-magnetar-runc resources-magnetar-runc resources-magnetar-quark smoke-magnetar-gvisor wasm-basic critest}
CGV2_MEM=${CGV2_MEM:-3072}
CGV2_CPUS=${CGV2_CPUS:-2}
CGV2_TIMEOUT=${CGV2_TIMEOUT:-5400}
RESULTS=$OUT/cgroupv2
IMAGES=${IMAGES:-$OUT/images}
# modules the initramfs loads to mount the root (the rest come from the
# module tree once it is mounted)
INITRD_MODULES="virtio_mmio fuse virtiofs overlay"

t0=$SECONDS
summary_done=0
# no_summary MESSAGE: the run could not start: one failure
no_summary() {
  echo "FAIL cgroupv2: $*"
  echo "cgroupv2: 0 passed, 1 failed, 0 skipped"
  summary_done=1
  exit 1
}

[ "$(id -u)" = 0 ] || no_summary "needs root"
for f in "$QEMU" "$VIRTIOFSD" /bin/busybox; do [ -x "$f" ] || no_summary "$f missing (apt-get install qemu-system-x86 busybox-static)"; done
command -v cpio >/dev/null && command -v modprobe >/dev/null || no_summary "cpio or modprobe missing (apt-get install cpio kmod)"
if ldd /bin/busybox >/dev/null 2>&1; then no_summary "/bin/busybox is not static (apt-get install busybox-static)"; fi
[ -f "$GUEST_OUT/vmlinuz" ] && [ -f "$GUEST_OUT/manifest.json" ] || no_summary "no guest kernel in $GUEST_OUT: run make guest-image"
for b in runc-sandboxer wasm-sandboxer; do [ -x "$ROOT/bin/$b" ] || no_summary "bin/$b missing: run make build"; done
for f in containerd crictl critest runc; do [ -x "$PREFIX/bin/$f" ] || no_summary "$PREFIX/bin/$f missing: run make tools"; done
for t in busybox pause wasm-go wasm-c wasm-bad; do [ -f "$IMAGES/$t.tar" ] || no_summary "$IMAGES/$t.tar missing: run make images wasm-images"; done

# the kernel's module tree: the guest-image cache entry of the manifest's
# kernel package (hack/vm/guest-image.sh: KDIR/root/lib/modules/<release>)
meta() { sed -n "s/^ *\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$GUEST_OUT/manifest.json" | head -1; }
KPKG=$(meta kernel_package)
KVER=$(meta kernel_release)
KDIR=$GUEST_CACHE/kernel/${KPKG}_$(meta kernel_package_version)/root
[ -d "$KDIR/lib/modules/$KVER" ] || no_summary "no module tree $KDIR/lib/modules/$KVER (make guest-image unpacks it)"
cmp -s "$KDIR/boot/vmlinuz-$KVER" "$GUEST_OUT/vmlinuz" || no_summary "$GUEST_OUT/vmlinuz is not $KDIR/boot/vmlinuz-$KVER: run make guest-image"

T=$(mktemp -d "${TMPDIR:-/tmp}/magnetar-cgv2.XXXXXX")
QEMU_PID="" FSD_PID="" TAIL_PID=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local p
  for p in $QEMU_PID $FSD_PID $TAIL_PID; do
    if pid_alive "$p"; then kill -KILL "$p" 2>/dev/null; fi
  done
  for p in $QEMU_PID $FSD_PID $TAIL_PID; do wait "$p" 2>/dev/null; done
  # virtiofsd's mount namespace (and the read-only bind of / in it) dies
  # with its last process; the bind's mount point is a plain directory here
  if [ "${CGV2_KEEP_TMP:-0}" = 1 ]; then log "kept $T"; else rm -rf --one-file-system "$T"; fi
  if [ "$summary_done" = 0 ]; then
    echo "FAIL cgroupv2: interrupted (rc=$rc)"
    echo "cgroupv2: 0 passed, 1 failed, 0 skipped"
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$RESULTS"
mkdir -p "$RESULTS" "$T/share/root" "$T/share/out" "$T/initrd"/{bin,dev,proc,sys,host,upper,newroot,modules}

# --- the initramfs: busybox, the modules to mount the root, /init ----------
# shellcheck disable=SC2086 # a list of names
module_deps "$T/order" "$KDIR" "$KVER" $INITRD_MODULES || no_summary "a module of $INITRD_MODULES is not in $KDIR"
while read -r path; do
  cp "$path" "$T/initrd/modules/"
  basename "$path" >>"$T/initrd/modules/load"
done <"$T/order"
cp /bin/busybox "$T/initrd/bin/busybox"
cat >"$T/initrd/init" <<EOF
#!/bin/busybox sh
# hack/cgroupv2/run.sh's initramfs: mount the host's / (virtio-fs, read-only)
# under a tmpfs overlay and switch_root to the guest script
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in \$(cat /modules/load); do insmod /modules/\$m || echo "cgv2-init: insmod \$m failed"; done
fail() { echo "cgv2-init: \$*"; echo "CGV2-RESULT boot failed"; echo o >/proc/sysrq-trigger; sleep 60; }
mount -t virtiofs magnetar /host || fail "mount virtiofs"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "mount tmpfs"
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/host/root,upperdir=/upper/u,workdir=/upper/w /newroot || fail "mount overlay"
mkdir -p /newroot/mnt/magnetar-out
mount --bind /host/out /newroot/mnt/magnetar-out || fail "bind out"
for d in dev proc sys; do mount --move /\$d /newroot/\$d; done
exec switch_root /newroot /bin/bash $ROOT/hack/cgroupv2/guest.sh
EOF
chmod 0755 "$T/initrd/init"
(cd "$T/initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$T/initrd.cpio"

# --- what the guest runs -------------------------------------------------------
# A snapshot of bin/ (the sandboxers), hack/ (the harness scripts) and the
# images, bound over their places in the VM: others rebuild bin/ and edit
# hack/ on this machine meanwhile, and a file replaced on the host under a
# read-only virtio-fs root is a "stale file handle" in the guest
mkdir -p "$T/share/out/snap/images"
for b in runc-sandboxer wasm-sandboxer quark-sandboxer gvisor-sandboxer magnetar-podinit; do
  if [ -f "$ROOT/bin/$b" ]; then mkdir -p "$T/share/out/snap/bin" && cp -p "$ROOT/bin/$b" "$T/share/out/snap/bin/"; fi
done
# the stand-in for Quark (make quark-standin): magnetar-quark's pods
if [ -x "$QUARK_BIN" ]; then mkdir -p "$T/share/out/snap/standins" && cp -p "$QUARK_BIN" "$T/share/out/snap/standins/quark"; fi
cp -a "$ROOT/hack" "$T/share/out/snap/hack"
for t in busybox pause web wasm-go wasm-c wasm-bad; do
  if [ -f "$IMAGES/$t.tar" ]; then cp -p "$IMAGES/$t.tar" "$T/share/out/snap/images/"; fi
done
cat >"$T/share/out/config.env" <<EOF
ROOT=$ROOT
OUT=$OUT
PREFIX=$PREFIX
KDIR=$KDIR
KVER=$KVER
CGV2_SUITES="$CGV2_SUITES"
EOF

# --- virtiofsd: / read-only (the root file system alone: a non-recursive bind,
# made read-only, in a mount namespace of our own that is a slave of the
# host's, so nothing of it shows on the host and the host's unmounts reach it)
# and the results directory read-write
sock=$T/vfs.sock
unshare -m --propagation slave -- /bin/sh -c '
  mount --bind / "$1/share/root" && mount -o remount,bind,ro "$1/share/root" || exit 1
  exec nice -n 19 "$2" --socket-path="$1/vfs.sock" -o source="$1/share" -o cache=auto \
    -o log_level=warn --rlimit-nofile=65536' sh "$T" "$VIRTIOFSD" >"$RESULTS/virtiofsd.log" 2>&1 &
FSD_PID=$!
for _ in $(seq 1 200); do [ -S "$sock" ] && break; pid_alive "$FSD_PID" || break; sleep 0.05; done
[ -S "$sock" ] || { cat "$RESULTS/virtiofsd.log"; no_summary "virtiofsd did not start"; }

# --- the VM (hack/vm/guestvm's microvm shape) -----------------------------------
tsc=$(cat /sys/devices/system/cpu/cpu0/tsc_freq_khz 2>/dev/null ||
  awk -F: '/^cpu MHz/ {printf "%d\n", $2 * 1000; exit}' /proc/cpuinfo)
cmdline="console=ttyS0 panic=-1 reboot=t loglevel=4 tsc_early_khz=$tsc cgroup_no_v1=all"
log "booting $KVER (TCG, ${CGV2_MEM} MiB, $CGV2_CPUS CPUs, cgroup_no_v1=all; suites: $CGV2_SUITES; console: $RESULTS/console.log)"
nice -n 19 "$QEMU" \
  -machine microvm,memory-backend=mem -accel tcg -cpu max \
  -object "memory-backend-memfd,id=mem,size=${CGV2_MEM}M,share=on" -m "$CGV2_MEM" -smp "$CGV2_CPUS" \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -global virtio-mmio.force-legacy=false \
  -chardev "socket,id=vfs,path=$sock" -device vhost-user-fs-device,chardev=vfs,tag=magnetar \
  -kernel "$GUEST_OUT/vmlinuz" -initrd "$T/initrd.cpio" -append "$cmdline" \
  </dev/null >"$RESULTS/console.log" 2>&1 &
QEMU_PID=$!
# the guest's progress lines as they come (tail ends with QEMU)
tail -n +1 -f --pid="$QEMU_PID" "$RESULTS/console.log" 2>/dev/null |
  grep --line-buffered -E '^(CGV2|\[[0-9:]+\] |ok |FAIL|e2e: |critest: )' &
TAIL_PID=$!
timed_out=0
while pid_alive "$QEMU_PID"; do
  if [ $((SECONDS - t0)) -ge "$CGV2_TIMEOUT" ]; then
    timed_out=1
    kill -KILL "$QEMU_PID" 2>/dev/null || true
    break
  fi
  sleep 1
done
qrc=0
wait "$QEMU_PID" || qrc=$?
wait "$TAIL_PID" 2>/dev/null || true
QEMU_PID=""
if [ "$timed_out" = 1 ]; then echo "FAIL cgroupv2: killed the VM after CGV2_TIMEOUT=$CGV2_TIMEOUT s"; fi
secs=$((SECONDS - t0))

# --- results -------------------------------------------------------------------
pass=0 fail=$timed_out skip=0
if [ -d "$T/share/out/logs" ]; then cp -r "$T/share/out/logs" "$RESULTS/"; fi
R=$T/share/out/results
if [ ! -s "$R" ]; then
  echo "FAIL cgroupv2: the guest wrote no results (qemu exit code $qrc; tail of $RESULTS/console.log:)"
  tail -30 "$RESULTS/console.log" | sed 's/^/  /'
  fail=1
else
  cp "$R" "$RESULTS/results"
  # lines: SUITE HANDLER N passed, M failed, K skipped
  declare -A hp hf hs hd
  while read -r suite handler rest; do
    p=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' <<<"$rest")
    f=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$rest")
    s=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$rest")
    if [ -z "$p" ] || [ -z "$f" ]; then p=0 f=1; fi
    echo "$suite[$handler]: $rest"
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    [ "$handler" = - ] && continue
    hp[$handler]=$((${hp[$handler]:-0} + p)); hf[$handler]=$((${hf[$handler]:-0} + f)); hs[$handler]=$((${hs[$handler]:-0} + ${s:-0}))
    hd[$handler]="${hd[$handler]:+${hd[$handler]}, }$suite $p/$f"
  done <"$R"
  if ! grep -q '^CGV2-DONE' "$RESULTS/console.log"; then
    echo "FAIL cgroupv2: the guest did not finish (qemu exit code $qrc, $secs s; see $RESULTS/console.log)"
    fail=$((fail + 1))
  fi
  for h in "${!hp[@]}"; do
    conformance_record cgroupv2 "$h" "${hp[$h]} passed, ${hf[$h]} failed, ${hs[$h]} skipped (${hd[$h]}; kernel $KVER, cgroup_no_v1=all)"
  done
fi
log "cgroupv2: $secs s (console, results and the guest's logs in $RESULTS)"
summary_done=1
echo "cgroupv2: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
