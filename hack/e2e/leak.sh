#!/usr/bin/env bash
# hack/e2e/leak.sh: nothing is left behind by pods that come and go.
# One warm-up cycle (so that lazily opened, long-lived connections such as the
# sandboxer's events client exist before the baseline), then a baseline of:
#   mounts below WORK, new mounts elsewhere on the host, network namespaces (containerd's,
#   below state/, and /var/run/netns), files+dirs in the handler's state dir
#   (the sandboxer's --dir; for the runc shim: the v2 task dir + runc root),
#   our processes (shims, daemon children, everything in our pods' cgroups),
#   our cgroup dirs, CNI IP allocations, veths on our bridge, runc containers,
#   CRI pods, taps in the host's netns, and the open fds of the daemon (the
#   sandboxer; containerd for the runc shim handler) and of its task keeper,
#   the daemon's threads and RSS; containerd's own fds are printed for information,
# then CYCLES (20) cycles of runp + create + start + exec + rmp -f, and every
# count must come back to its baseline (polled for up to 20 s), except the
# ones with a stated noise bound: FD_SLACK (default 0) extra fds of the daemon
# and of the keeper (the warm-up cycle already opens everything long-lived, so
# any growth is a leak); THREAD_SLACK (8) more daemon threads (Go keeps the OS
# threads that blocking syscalls of parallel requests needed); daemon RSS up
# to RSS_NOISE_KIB (16384: heap growth to the GC's target, page cache of its
# binary) + RSS_PER_CYCLE_KIB (32) per cycle.
# LEAK_REPORT=FILE appends one line per metric: handler cycles metric before
# after growth-per-cycle limit (make leaks: hack/leaks.sh).
#
#   [RUNTIME_HANDLER=magnetar-runc|runc|...] [CYCLES=20] [WORK=...] hack/e2e/leak.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

CYCLES=${CYCLES:-20}
FD_SLACK=${FD_SLACK:-0}
THREAD_SLACK=${THREAD_SLACK:-8}
RSS_NOISE_KIB=${RSS_NOISE_KIB:-16384}
RSS_PER_CYCLE_KIB=${RSS_PER_CYCLE_KIB:-32}
SB=$(sandboxer_binary "$DAEMON_HANDLER" || true)

# limit METRIC BASE: the most METRIC may be after the cycles
limit() {
  case "$1" in
  daemon_fds | keeper_fds) echo $(($2 + FD_SLACK)) ;;
  daemon_threads) echo $(($2 + THREAD_SLACK)) ;;
  daemon_rss_kib) echo $(($2 + RSS_NOISE_KIB + CYCLES * RSS_PER_CYCLE_KIB)) ;;
  *) echo "$2" ;;
  esac
}
keeper_pid() { [ -n "$SB" ] && cat "$WORK/run/${SB%-sandboxer}-keeper.pid" 2>/dev/null; }

daemon_pid() {
  if [ -n "$SB" ]; then cat "$WORK/run/$DAEMON_HANDLER.pid"; else cat "$WORK/run/containerd.pid"; fi
}
state_dirs() {
  if [ -n "$SB" ]; then echo "$WORK/lib/$RUNTIME_HANDLER"
  else echo "$WORK/state/io.containerd.runtime.v2.task" "$WORK/state/runc"; fi
}
our_processes() { harness_pids | wc -l; }

# mount points outside WORK that were not there at the baseline, ignoring
# other harness instances of this checkout ($OUT/...) and Go test temp dirs
# (/tmp/...): other jobs on the machine may mount there meanwhile.
mount_points() { awk '{print $2}' /proc/mounts | sort; }
new_mounts_elsewhere() {
  [ -f "$T/mounts.base" ] || return 0
  comm -13 "$T/mounts.base" <(mount_points) | awk -v w="$WORK/" -v o="$OUT/" \
    'index($0, w) != 1 && index($0, o) != 1 && index($0, "/tmp/") != 1'
}

# measure: one "name value" line per metric
measure() {
  local netns_state
  netns_state=$(find "$WORK/state" -path '*netns*' -type f 2>/dev/null | wc -l)
  echo "mounts_below_work $(awk -v w="$WORK/" 'index($2, w) == 1' /proc/mounts | wc -l)"
  echo "new_mounts_elsewhere $(new_mounts_elsewhere | wc -l)"
  echo "netns_state $netns_state"
  echo "netns_var_run $(find /var/run/netns -mindepth 1 2>/dev/null | wc -l)"
  # shellcheck disable=SC2046 # state_dirs gives one or two paths without spaces
  echo "state_entries $(find $(state_dirs) -mindepth 1 2>/dev/null | wc -l)"
  echo "processes $(our_processes)"
  echo "cgroup_dirs $(for d in $(cgroup_parent_dirs); do find "$d" -mindepth 1 -type d; done | wc -l)"
  echo "ip_allocations $(find "$WORK/cni-ipam" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null | wc -l)"
  echo "bridge_ports $(ip -o link show master "$BRIDGE" 2>/dev/null | wc -l)"
  echo "runc_containers $(for r in "$WORK/state/runc" "$WORK"/run/*/runc; do [ -d "$r" ] && "$PREFIX/bin/runc" --root "$r" list -q 2>/dev/null; done | wc -l)"
  echo "cri_pods $(crictl pods -q | wc -l)"
  echo "taps $(ip -o link show type tun 2>/dev/null | wc -l)"
  echo "daemon_fds $(ls "/proc/$(daemon_pid)/fd" | wc -l)"
  local k
  if k=$(keeper_pid); then echo "keeper_fds $(ls "/proc/$k/fd" | wc -l)"; fi
  echo "daemon_threads $(awk '/^Threads:/ {print $2}' "/proc/$(daemon_pid)/status")"
  echo "daemon_rss_kib $(awk '/^VmRSS:/ {print $2}' "/proc/$(daemon_pid)/status")"
}
# informational only
info() {
  local cpid
  cpid=$(cat "$WORK/run/containerd.pid")
  echo "containerd_fds $(ls "/proc/$cpid/fd" | wc -l)"
  echo "containerd_threads $(awk '/^Threads:/ {print $2}' "/proc/$cpid/status")"
  echo "host_processes $(ps -e -o stat= | grep -vc '^Z')"
  echo "host_mounts $(wc -l < /proc/mounts)"
}

# the workload: busybox sleep and an exec of true; a wasm handler's (its
# modules run in the daemon) the C test module's sleep and exit 0
# (hack/wasm/images.sh import)
case "$RUNTIME_HANDLER" in
magnetar-wasm*) WL_IMAGE=localhost/magnetar/wasm-c:v1 WL_CMD='["/hello.wasm", "sleep", "3600"]' WL_EXEC="/hello.wasm exit 0" ;;
*) WL_IMAGE=$BUSYBOX_IMAGE WL_CMD='["sleep", "3600"]' WL_EXEC=true ;;
esac
cycle() { # cycle N
  local p c
  p=$(run_pod "leak-$1")
  c=$(start_ctr "$p" "leak-$1" c "$WL_IMAGE" "$WL_CMD")
  wait_ctr_state "$c" CONTAINER_RUNNING 10
  # shellcheck disable=SC2086 # WL_EXEC is words
  exec_out "$c" $WL_EXEC >/dev/null
  crictl rmp -f "$p" >/dev/null
}
cycles() {
  local i t0 ms max=0 sum=0
  for i in $(seq 1 "$CYCLES"); do
    t0=$(now_ms)
    cycle "$i" || fail "cycle $i failed"
    ms=$(( $(now_ms) - t0 )); sum=$((sum + ms)); [ "$ms" -le "$max" ] || max=$ms
  done
  echo "$CYCLES cycles: mean $((sum / CYCLES)) ms, max $max ms"
}
# within METRIC: its value after the cycles is within its bound (the
# baseline itself for the exact ones)
within() {
  local b a lim
  b=$(awk -v k="$1" '$1 == k {print $2}' "$T/base")
  a=$(awk -v k="$1" '$1 == k {print $2}' "$T/after")
  lim=$(limit "$1" "$b")
  if [ "$lim" = "$b" ]; then [ "$a" = "$b" ]; else [ "${a:-0}" -le "$lim" ]; fi
}
# settled: every metric is back at its baseline, or within its bound
settled() {
  local m
  measure > "$T/after"
  for m in $(awk '{print $1}' "$T/base"); do within "$m" || return 1; done
}
compare() { # compare METRIC
  local b a lim
  b=$(awk -v k="$1" '$1 == k {print $2}' "$T/base")
  a=$(awk -v k="$1" '$1 == k {print $2}' "$T/after")
  lim=$(limit "$1" "$b")
  if [ -n "${LEAK_REPORT:-}" ]; then
    printf '%s %s %s %s %s %s %s\n' "$RUNTIME_HANDLER" "$CYCLES" "$1" "$b" "$a" \
      "$(awk -v b="$b" -v a="$a" -v n="$CYCLES" 'BEGIN { printf "%.2f", (a - b) / n }')" "$lim" >> "$LEAK_REPORT"
  fi
  if [ "$lim" = "$b" ]; then
    [ "$a" = "$b" ] || fail "$1: $b before, $a after $CYCLES cycles"
  else
    [ "$a" -le "$lim" ] || fail "$1: $b before, $a after $CYCLES cycles (allowed up to $lim)"
  fi
}

req  "warm-up cycle" cycle 0
mount_points > "$T/mounts.base"
measure > "$T/base"; info > "$T/base.info"
echo "     leak: baseline: $(tr '\n' ' ' < "$T/base")"
req  "$CYCLES pod+container cycles" cycles; echo "     leak: $LAST"
# wait for asynchronous cleanup (bounded), then compare metric by metric
if ! wait_for 20 settled 2>/dev/null; then :; fi
measure > "$T/after"; info > "$T/after.info"
echo "     leak: after:    $(tr '\n' ' ' < "$T/after")"
echo "     leak: info before: $(tr '\n' ' ' < "$T/base.info")"
echo "     leak: info after:  $(tr '\n' ' ' < "$T/after.info")"
if [ -n "$(new_mounts_elsewhere)" ]; then echo "     leak: new mounts outside WORK: $(new_mounts_elsewhere | tr '\n' ' ')"; fi
for m in $(awk '{print $1}' "$T/base"); do
  step "back to baseline: $m ($(awk -v k="$m" '$1 == k {print $2}' "$T/base") -> $(awk -v k="$m" '$1 == k {print $2}' "$T/after"))" compare "$m"
done
