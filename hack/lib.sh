#!/usr/bin/env bash
# hack/lib.sh: shared settings for every hack/ script. Source it.
#
# Test components are built from the Go module proxy into a cache keyed by
# version (MAGNETAR_TOOLS, outside the clone so CI reruns reuse it), then linked
# into the project-local prefix $PREFIX (_output/prefix). Nothing is installed
# over the system's own containerd, runc or sockets.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
OUT=${OUT:-$ROOT/_output}
PREFIX=${PREFIX:-$OUT/prefix}
MAGNETAR_TOOLS=${MAGNETAR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/magnetar/tools}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.2}
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.36.0}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
# gVisor's runsc (gvisor.dev/gvisor/runsc): the proxy serves no tags for gvisor
# (@go and @master answer 403), so a pseudo-version, the one @latest resolved
# to when it was pinned
RUNSC_VERSION=${RUNSC_VERSION:-v0.0.0-20260905035102-160fafc42237}
# the Kubernetes node of hack/k8s (hack/install-tools.sh k8s): kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
export PATH=/usr/local/go/bin:$PATH
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive PID: the process exists and is not a zombie (PID 1 may be slow to
# reap the daemons it inherits, and kill -0 succeeds on zombies)
pid_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# is_listening SOCKET: a process listens on the unix socket (from /proc/net/unix:
# flag __SO_ACCEPTCON); a stale socket file left by a killed daemon does not count.
is_listening() { awk -v p="$1" '$8 == p && $4 == "00010000" {f=1} END {exit !f}' /proc/net/unix; }

# pidfile_stop NAME PIDFILE [SIGNAL] [SECONDS]: signal the daemon of PIDFILE
# (default TERM), wait up to SECONDS (default 10) for it to go, then KILL;
# remove PIDFILE
pidfile_stop() {
  local name=$1 pidf=$2 sig=${3:-TERM} secs=${4:-10} pid i
  if [ ! -f "$pidf" ] || ! pid_alive "$(cat "$pidf")"; then rm -f "$pidf"; return 0; fi
  pid=$(cat "$pidf")
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 $((secs * 20))); do pid_alive "$pid" || break; sleep 0.05; done
  if pid_alive "$pid"; then log "$name ignored SIG$sig for $secs s: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  for i in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.05; done
  rm -f "$pidf"
}

# --- e2e harness: hack/containerd.sh, hack/e2e/*, hack/critest.sh, hack/demo.sh
# Everything of one harness instance lives below WORK (throwaway): containerd's
# root/state/sockets, the sandboxers' dirs, CNI config and IPAM, logs.
WORK=${WORK:-$OUT/e2e}
CSOCK=$WORK/run/containerd.sock
# containerd's shim sockets are SHIM_SOCKETS/<64 hex digits>: a unix socket
# path has at most 107 bytes, so a long WORK (a deep checkout) gets a short
# directory of its own under /run instead of WORK/s
shim_socket_dir() {
  if [ $((${#WORK} + 67)) -le 104 ]; then
    echo "$WORK/s"
  else
    echo "/run/magnetar-harness/$(printf '%s' "$WORK" | sha256sum | cut -c1-12)"
  fi
}
SHIM_SOCKETS=$(shim_socket_dir)
CRICTL_CONFIG=$WORK/etc/crictl.yaml
# run_dir_of NAME: a sandboxer's per-pod run directories (VM sockets,
# Quark task sockets: unix socket paths must fit 107 bytes): below WORK when
# it is short, else a short directory of its own under /run/magnetar-harness
run_dir_of() {
  if [ $((${#WORK} + 5 + ${#1})) -le 76 ]; then
    echo "$WORK/run/$1"
  else
    echo "/run/magnetar-harness/$(printf '%s' "$WORK" | sha256sum | cut -c1-12)-$1"
  fi
}
# debug_socket_of DAEMON-HANDLER: where a harness daemon serves its Go
# profiles (its debug_socket key)
debug_socket_of() { echo "$WORK/run/$1-debug.sock"; }

# Magnetar sandboxers the harness knows, one line each: "HANDLER BINARY".
# HANDLER names both the containerd proxy plugin and the CRI runtime handler;
# the daemon is $ROOT/bin/BINARY and is configured only when that file exists.
# Per-sandboxer config file content: sandboxer_config() in hack/containerd.sh.
MAGNETAR_SANDBOXERS=(
  "magnetar-runc runc-sandboxer"
  "magnetar-wasm wasm-sandboxer"
  "magnetar-vmm vmm-sandboxer"
  "magnetar-gvisor gvisor-sandboxer"
  "magnetar-quark quark-sandboxer"
)
# the guest image the vmm sandboxer boots (make guest-image)
GUEST_OUT=${GUEST_OUT:-$OUT/guest}
# the quark the quark sandboxer runs: the stand-in for tests (make
# quark-standin: hack/standins/quark, never packaged), or a real Quark
QUARK_BIN=${QUARK_BIN:-$OUT/standins/quark}
# More handlers served by the daemon of another one, one line each: "HANDLER
# SERVED_BY": a proxy plugin HANDLER at SERVED_BY's socket plus a CRI runtime
# handler, configured when SERVED_BY is (the wasm daemon picks its engine by
# the proxy plugin name containerd sends; the vmm daemon its hypervisor).
MAGNETAR_HANDLER_ALIASES=(
  "magnetar-wasm-wazero magnetar-wasm"
  "magnetar-clh magnetar-vmm"
  "magnetar-stratovirt magnetar-vmm"
)
# the Cloud Hypervisor stand-in (hack/standins/cloud-hypervisor, built by
# make standins; tests only) that the harness's magnetar-clh pods run on:
# this machine has no KVM for the real cloud-hypervisor
CLH_STANDIN=${CLH_STANDIN:-$OUT/standins/cloud-hypervisor}
# the StratoVirt stand-in (hack/standins/stratovirt, make standins; tests
# only) of the harness's magnetar-stratovirt pods: StratoVirt needs KVM too
STRATOVIRT_STANDIN=${STRATOVIRT_STANDIN:-$OUT/standins/stratovirt}
# daemon_handler HANDLER: the handler whose daemon serves HANDLER (itself, or
# what an alias is served by); its pid file is $WORK/run/<that>.pid
daemon_handler() {
  local line name by
  for line in "${MAGNETAR_HANDLER_ALIASES[@]}"; do
    read -r name by <<<"$line"
    if [ "$name" = "$1" ]; then echo "$by"; return 0; fi
  done
  echo "$1"
}

# sandboxer_binary HANDLER: prints BINARY for a known HANDLER (rc 1 otherwise)
sandboxer_binary() {
  local line name bin
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    if [ "$name" = "$1" ]; then echo "$bin"; return 0; fi
  done
  return 1
}

# --- processes of one harness instance (read etc/harness.env first) ---------------

# our_shims: containerd shims started by this WORK's containerd (their command
# line names our socket); zombies have an empty cmdline and are skipped
our_shims() {
  local p
  for p in $(pgrep -f containerd-shim || true); do
    if tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -qF -- "$CSOCK"; then echo "$p"; fi
  done
}
# cgroup_parent_dirs: our pods' cgroup parent in every mounted hierarchy
cgroup_parent_dirs() {
  [ -n "${CGROUP_PARENT:-}" ] || return 0
  local rel=$CGROUP_PARENT m
  if [ "${CGROUP_DRIVER:-cgroupfs}" = systemd ]; then rel=/$CGROUP_PARENT; fi
  for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    if [ -d "$m$rel" ]; then echo "$m$rel"; fi
  done
}
# descendants PID...: the given PIDs and every process below them
descendants() {
  ps -e -o pid=,ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
    { parent[$1] = $2 }
    END { do { changed = 0
               for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 } } while (changed)
          for (p in want) print p }'
}
# daemon_pids: containerd and the sandboxer daemons of this WORK
daemon_pids() {
  local f
  for f in "$WORK"/run/*.pid; do
    if [ -f "$f" ] && pid_alive "$(cat "$f")"; then cat "$f"; fi
  done
}
# harness_pids: live processes that belong to this harness's pods: shims and
# everything below them, everything below the daemons (not the daemons), and
# everything in our pods' cgroups
harness_pids() {
  local daemons roots d p
  daemons=" $(daemon_pids | tr '\n' ' ') "
  roots="$daemons $(our_shims | tr '\n' ' ')"
  {
    if [ -n "${roots// /}" ]; then descendants $roots; fi
    for d in $(cgroup_parent_dirs); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done
  } | sort -un | while read -r p; do
    case "$daemons" in *" $p "*) continue ;; esac
    if pid_alive "$p"; then echo "$p"; fi
  done
}

# module_deps OUT ROOT KVER MODULE...: write OUT with the absolute paths of
# the kernel modules to insmod for each MODULE (ROOT's module tree of kernel
# KVER, by modprobe --show-depends), in dependency order, each once; built-in
# ones need nothing. Fails, naming the module, when ROOT does not have one.
module_deps() {
  local out=$1 root=$2 kver=$3 m kind path rest
  shift 3
  : >"$out"
  for m in "$@"; do
    if ! modprobe -d "$root" -S "$kver" --show-depends "$m" >"$out.dep"; then
      rm -f "$out.dep"; log "module $m: not in $root ($kver)"; return 1
    fi
    while read -r kind path rest; do
      [ "$kind" = insmod ] || continue
      grep -qxF "$path" "$out" || echo "$path" >>"$out"
    done <"$out.dep"
  done
  rm -f "$out.dep"
}

# --- stage totals of the e2e stages (hack/e2e-all.sh, hack/wasm/e2e-all.sh,
# hack/vmm/e2e-all.sh, hack/gvisor/e2e-all.sh, hack/quark/e2e-all.sh): each
# keeps pass, fail, skip and summary=() and counts what its suites' logs say
# (run_suite, add_counts).

# add_counts LOG PREFIX NAME RC: add the last "PREFIX: N passed, M failed[, K
# skipped]" of LOG to the totals; no such line, or a non-zero RC with no
# failure counted, counts as one failure
add_counts() {
  local line p f s
  line=$(grep -E "^$2: [0-9]+ passed, [0-9]+ failed" "$1" | tail -1 || true)
  if [ -z "$line" ]; then
    summary+=("$3: no summary line (exit code $4, see $1)"); fail=$((fail + 1)); return 0
  fi
  p=$(sed 's/^[^:]*: \([0-9]*\) passed.*/\1/' <<<"$line")
  f=$(sed 's/.* \([0-9]*\) failed.*/\1/' <<<"$line")
  s=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$line")
  if [ "$4" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; line="$line (but exit code $4)"; fi
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
  summary+=("$3: $line")
}

# run_suite NAME PREFIX LOG COMMAND...: run COMMAND (its output shown and
# kept in LOG), add LOG's last "PREFIX: N passed, ..." line to the totals as
# NAME (add_counts), and log what ran and how long it took
run_suite() {
  local name=$1 prefix=$2 lf=$3 rc=0 ts=$SECONDS
  shift 3
  log "suite $name (${*: -1})"
  "$@" 2>&1 | tee "$lf" || rc=$?
  add_counts "$lf" "$prefix" "$name" "$rc"
  log "suite $name took $((SECONDS - ts)) s"
}

# suite_script AREA NAME: the script of e2e suite NAME, AREA's own
# (hack/AREA/e2e/NAME.sh) or else the generic one (hack/e2e/NAME.sh)
suite_script() {
  local s=$ROOT/hack/$1/e2e/$2.sh
  [ -x "$s" ] || s=$ROOT/hack/e2e/$2.sh
  echo "$s"
}

# conformance_record SUITE HANDLER LINE: keep the count line ("N passed, M
# failed, K skipped ...") of SUITE on HANDLER for the conformance table
# (hack/conformance.sh), with the commit it ran on
conformance_record() {
  local dir=$OUT/conformance/$1 commit
  commit=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
  mkdir -p "$dir"
  printf '%s\t%s\t%s\n' "$3" "$commit" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$dir/$2.tmp" && mv "$dir/$2.tmp" "$dir/$2"
}

# stage_start: a fresh harness containerd in $WORK (hack/containerd.sh:
# reset, which also stops what an earlier, interrupted run left, then
# start) and its logs directory
stage_start() {
  "$ROOT/hack/containerd.sh" reset >/dev/null 2>&1 || log "reset of $WORK failed; starting anyway"
  "$ROOT/hack/containerd.sh" start
  mkdir -p "$WORK/logs"
}

# stage_leftovers WHAT PATTERN: count a failure for processes left whose
# command line names $WORK/ and matches PATTERN (an ERE), listing them
stage_leftovers() {
  local left
  left=$(pgrep -f -- "$WORK/" | while read -r p; do tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-100; echo; done | grep -E "$2" || true)
  if [ -n "$left" ]; then echo "FAIL teardown: $1 processes left:"; echo "$left" | sed 's/^/  /'; fail=$((fail + 1)); fi
}

# show_vm_consoles [N]: the last N (40) lines of the console of every VM the
# harness's vmm sandboxer still runs, pool VMs included: after a failed
# stage, the clue to a guest that stopped answering (the run directories go
# with the harness)
show_vm_consoles() {
  local f pidf=$WORK/run/magnetar-vmm.pid lg=$WORK/logs/magnetar-vmm.log
  for f in "$(run_dir_of vmm)"/*/console.log; do
    [ -f "$f" ] || continue
    echo "--- guest console $f (last ${1:-40} lines)"
    tail -n "${1:-40}" "$f" | cut -c1-300 | sed 's/^/  | /'
  done
  # and where the daemon's calls into guests wait (its SIGUSR1 stack dump)
  if [ -f "$pidf" ] && kill -USR1 "$(cat "$pidf")" 2>/dev/null; then
    sleep 1
    echo "--- magnetar-vmm goroutines in a call to a guest (SIGUSR1 dump in $lg)"
    { grep 'goroutine dump' "$lg" || true; } | tail -1 | sed 's/\\n/\n/g; s/\\t/\t/g' |
      awk -v RS= '/taskfwd|agentclient/ && /Create|Start|Exec|Conn|Dial/' | head -100 | cut -c1-200 | sed 's/^/  | /'
  fi
}

# stage_teardown: stop the stage's containerd (hack/containerd.sh stop) and
# count a failure for it failing or for any mount left below $WORK
stage_teardown() {
  log "teardown"
  "$ROOT/hack/containerd.sh" stop >/dev/null 2>&1 || { echo "FAIL teardown: hack/containerd.sh stop failed"; fail=$((fail + 1)); }
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then
    echo "FAIL teardown: mounts left below $WORK:"; awk -v w="$WORK/" 'index($2, w) == 1 {print "  " $2}' /proc/mounts
    fail=$((fail + 1))
  fi
}

# stage_end NAME RC: print each suite's line and "NAME: N passed, M failed,
# K skipped", and exit 1 on any failure (a script error RC with none counted
# is one)
stage_end() {
  if [ "$2" -ne 0 ] && [ "$fail" -eq 0 ]; then echo "FAIL $1: script error (rc=$2)"; fail=$((fail + 1)); fi
  echo
  local l
  for l in "${summary[@]}"; do echo "$l"; done
  echo "$1: $pass passed, $fail failed, $skip skipped"
  if [ "$fail" -gt 0 ]; then exit 1; fi
  exit 0
}
