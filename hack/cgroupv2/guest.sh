#!/bin/bash
# hack/cgroupv2/guest.sh: PID 1 of hack/cgroupv2/run.sh's VM, after its
# initramfs has mounted the host's / (read-only, virtio-fs) under a tmpfs
# overlay and switch_rooted here. Runs as the VM's init and is never run on
# a host: it mounts what a system needs (tmpfs on /tmp, /run, /var/lib/cni and
# the harness WORK; cgroup2 alone at /sys/fs/cgroup), checks the cgroup setup,
# loads the modules CNI needs from the guest kernel's module tree, runs the
# suites of CGV2_SUITES against the harness (hack/containerd.sh), writes one
# line per suite to /mnt/magnetar-out/results ("SUITE HANDLER N passed, M
# failed, K skipped") with the logs beside it, and powers the VM off.
# Its settings come from run.sh in /mnt/magnetar-out/config.env.
set -uo pipefail
OUTD=/mnt/magnetar-out
# shellcheck disable=SC1091
source "$OUTD/config.env"
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 ROOT OUT PREFIX
# run.sh's snapshot of bin/, hack/ and the images (see there): this script
# itself keeps running from the host's file, which bash has read by now
mount --bind "$OUTD/snap/bin" "$ROOT/bin"
mount --bind "$OUTD/snap/hack" "$ROOT/hack"
export IMAGES=$OUTD/snap/images
LOGS=$OUTD/logs
RES=$OUTD/results
t0=$SECONDS
say() { echo "CGV2 [$((SECONDS - t0)) s] $*"; }

poweroff() {
  say "power off"
  echo "CGV2-DONE"
  sync
  /bin/busybox poweroff -f
  echo o >/proc/sysrq-trigger
  sleep 60
}
trap poweroff EXIT

# --- the system --------------------------------------------------------------------
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
ln -sfn /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sfn "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
mount -t tmpfs -o mode=1777 shm /dev/shm
# a checkout below one of the directories that get a tmpfs here (a CI clone
# in /tmp) is set aside and put back on top of the new tmpfs, with the
# snapshot binds above
keep=""
for d in /tmp /run /var/lib/cni; do
  case "$ROOT/" in "$d"/*) keep=$ROOT ;; esac
done
if [ -n "$keep" ]; then mkdir -p /mnt/cgv2-checkout && mount --rbind "$keep" /mnt/cgv2-checkout; fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /var/lib/cni && mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni
if [ -n "$keep" ]; then mkdir -p "$keep" && mount --move /mnt/cgv2-checkout "$keep"; fi
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
hostname cgv2
ip link set lo up
# the guest kernel's modules: its tree from the guest-image cache, where
# modprobe (and the kernel's own module requests) look for them
mkdir -p /lib/modules && ln -sfn "$KDIR/lib/modules/$KVER" "/lib/modules/$KVER"
mods_failed=""
for m in bridge veth br_netfilter nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack \
  xt_MASQUERADE xt_comment xt_mark xt_addrtype xt_conntrack xt_multiport nft_masq nft_nat; do
  modprobe "$m" 2>/dev/null || mods_failed+=" $m"
done
mkdir -p "$LOGS"
: >"$RES"
say "kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB; cmdline: $(cat /proc/cmdline)"
[ -z "$mods_failed" ] || say "modules not loaded:$mods_failed"

# result NAME HANDLER LINE: one line of the results file
result() { echo "$1 $2 $3" >>"$RES"; say "$1[$2]: $3"; }

# --- the cgroup setup: v2 alone ----------------------------------------------------
env_check() {
  local bad=() c v1
  [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || bad+=("/sys/fs/cgroup is $(stat -f -c %T /sys/fs/cgroup), not cgroup2fs")
  v1=$(awk '$3 == "cgroup" {print $2}' /proc/mounts)
  [ -z "$v1" ] || bad+=("cgroup v1 mounted: $v1")
  for c in cpu memory pids io; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || bad+=("no $c in cgroup.controllers ($(cat /sys/fs/cgroup/cgroup.controllers))")
  done
  mkdir -p /tmp/v1
  if mount -t cgroup -o memory cgroup /tmp/v1 2>/dev/null; then bad+=("a v1 memory hierarchy can be mounted"); umount /tmp/v1; fi
  say "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers); v1 mounts: ${v1:-none}"
  if [ ${#bad[@]} -eq 0 ]; then result cgroupv2-only - "1 passed, 0 failed, 0 skipped"
  else printf 'FAIL %s\n' "${bad[@]}"; result cgroupv2-only - "0 passed, 1 failed, 0 skipped"; fi
}
env_check

# --- the harness -----------------------------------------------------------------
# the tools of _output/prefix are links into the tools cache that `make
# tools` on the host recreates (a run on the host meanwhile once made
# containerd miss the loopback plugin): the VM takes its own links
mkdir -p /run/cgv2-prefix
for d in bin cni-bin; do
  mkdir -p "/run/cgv2-prefix/$d"
  for f in "$PREFIX/$d"/*; do ln -s "$(readlink -f "$f")" "/run/cgv2-prefix/$d/$(basename "$f")"; done
done
export PREFIX=/run/cgv2-prefix
export WORK=$OUT/cgroupv2-vm BRIDGE=mgbr-cgv2 SUBNET=10.234.0.0/16
export HARNESS_SANDBOXERS="magnetar-runc magnetar-wasm"
# magnetar-quark on the stand-in for Quark, when run.sh snapshotted both
if [ -x "$ROOT/bin/quark-sandboxer" ] && [ -x "$OUTD/snap/standins/quark" ]; then
  HARNESS_SANDBOXERS+=" magnetar-quark"
  export QUARK_BIN=$OUTD/snap/standins/quark
fi
# magnetar-gvisor with the tools' runsc, when run.sh snapshotted its daemon
if [ -x "$ROOT/bin/gvisor-sandboxer" ] && [ -x "$PREFIX/bin/runsc" ]; then HARNESS_SANDBOXERS+=" magnetar-gvisor"; fi
mkdir -p "$WORK" && mount -t tmpfs -o mode=0755 tmpfs "$WORK"
say "harness start (WORK=$WORK on tmpfs)"
if ! "$ROOT/hack/containerd.sh" start >"$LOGS/harness-start.log" 2>&1; then
  cat "$LOGS/harness-start.log"
  result harness-start - "0 passed, 1 failed, 0 skipped"
  cp -r "$WORK/logs" "$LOGS/work" 2>/dev/null
  exit 0
fi
cat "$LOGS/harness-start.log"
# shellcheck disable=SC1091
source "$WORK/etc/harness.env"
# the wasm images: imported as hack/wasm/images.sh import does (make
# wasm-images built them on the host; no Go build in the VM)
for t in wasm-go wasm-c wasm-bad; do
  "$PREFIX/bin/ctr" --address "$WORK/run/containerd.sock" -n k8s.io images import --platform linux/amd64 "$IMAGES/$t.tar" >/dev/null ||
    say "import of $t failed"
done

# suite NAME HANDLER PREFIX COMMAND...: run COMMAND with RUNTIME_HANDLER,
# output on the console and in LOGS/NAME-HANDLER.log; its last "PREFIX: N
# passed, ..." line is the result (none, or a non-zero exit with no failure
# counted: one failure)
suite() {
  local name=$1 h=$2 prefix=$3 lf=$LOGS/$1-$2.log rc=0 ts=$SECONDS line
  shift 3
  say "suite $name[$h]"
  RUNTIME_HANDLER=$h "$@" 2>&1 | tee "$lf" || rc=$?
  line=$(grep -E "^$prefix: [0-9]+ passed, [0-9]+ failed" "$lf" | tail -1 || true)
  line=${line#"$prefix: "}
  if [ -z "$line" ]; then line="0 passed, 1 failed, 0 skipped (no summary line, exit code $rc)"
  elif [ "$rc" -ne 0 ] && [[ "$line" == *" 0 failed"* ]]; then line="${line/ 0 failed/ 1 failed} (exit code $rc)"; fi
  [[ "$line" == *skipped* ]] || line="${line/ failed/ failed, 0 skipped}"
  result "$name" "$h" "$line ($((SECONDS - ts)) s)"
}

for s in $CGV2_SUITES; do
  case "$s" in
  smoke-*) suite smoke "${s#smoke-}" e2e "$ROOT/hack/e2e/smoke.sh" ;;
  resources-*) suite resources "${s#resources-}" e2e "$ROOT/hack/e2e/resources.sh" ;;
  # a stop through crictl takes seconds under TCG (crictl alone does), and
  # the kill inside the daemon 100 to 500 ms: the suite's bounds (3 s, 100
  # ms) are a host's
  wasm-basic) suite wasm-basic magnetar-wasm e2e env STOP_MAX_MS="${CGV2_STOP_MAX_MS:-60000}" KILL_MAX_MS="${CGV2_KILL_MAX_MS:-2000}" "$ROOT/hack/wasm/e2e/basic.sh" ;;
  # what the cgroup hierarchy decides of a wasm pod: stats, update, memory
  # limit and OOMKilled (make cgroupv2-smoke)
  wasm-cgroups) suite wasm-cgroups magnetar-wasm e2e env WASM_BASIC_SET=cgroups "$ROOT/hack/wasm/e2e/basic.sh" ;;
  critest) suite critest-basic magnetar-runc critest env CRITEST_SET=basic "$ROOT/hack/critest.sh" ;;
  *) say "unknown suite $s"; result "$s" - "0 passed, 1 failed, 0 skipped (unknown suite)" ;;
  esac
done

# --- teardown: nothing of the pods left ------------------------------------------
say "harness stop"
"$ROOT/hack/containerd.sh" stop >"$LOGS/harness-stop.log" 2>&1
stop_rc=$?
left=()
[ "$stop_rc" -eq 0 ] || left+=("hack/containerd.sh stop: exit code $stop_rc")
if [ -d "/sys/fs/cgroup$CGROUP_PARENT" ]; then
  d=$(find "/sys/fs/cgroup$CGROUP_PARENT" -mindepth 1 -type d)
  [ -z "$d" ] || left+=("pod cgroups left: $d")
fi
m=$(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts)
[ -z "$m" ] || left+=("mounts left: $m")
p=$(pgrep -f -- "$WORK/" || true)
[ -z "$p" ] || left+=("processes left: $(for i in $p; do tr '\0' ' ' <"/proc/$i/cmdline" | cut -c1-80; echo; done)")
if [ ${#left[@]} -eq 0 ]; then result teardown - "1 passed, 0 failed, 0 skipped"
else printf 'FAIL teardown: %s\n' "${left[@]}"; result teardown - "0 passed, 1 failed, 0 skipped"; fi
cp -r "$WORK/logs" "$LOGS/work" 2>/dev/null
exit 0
