#!/usr/bin/env bash
# hack/containerd.sh: an isolated containerd 2.4 + CRI with Magnetar's
# sandboxers plugged in as Sandbox API proxy plugins, all below $WORK.
#
#   hack/containerd.sh start     write config, start every sandboxer present in
#                                $ROOT/bin, then containerd; import the images
#   hack/containerd.sh stop      remove all pods, stop containerd and the
#                                sandboxers, kill leftovers of ours, unmount
#                                everything below $WORK, delete the empty bridge
#   hack/containerd.sh reset     stop, then wipe all runtime state (keeps logs/)
#   hack/containerd.sh status    what runs
#   hack/containerd.sh config    (re)write and print the containerd config
#   hack/containerd.sh sandboxer-start|sandboxer-stop|sandboxer-kill|sandboxer-restart HANDLER
#   hack/containerd.sh containerd-start|containerd-kill|containerd-restart
#                                (for the restart tests: kill -9 / relaunch one daemon
#                                with the same flags; the other daemons keep running)
#   hack/containerd.sh sandboxer-reconfigure HANDLER
#                                stop the daemon, write its HANDLER.toml again
#                                from the knobs, start it
#
# Layout below WORK (default _output/e2e): root/ state/ (containerd; netns
# mounts under state/), run/ (sockets, pid files, sandboxer runc roots), s/
# (shim sockets), lib/HANDLER (sandboxer --dir), etc/ (containerd.toml,
# crictl.yaml, cni/net.d, HANDLER.toml, harness.env), cni-ipam/, logs/.
# Nothing is written to /etc, /run/containerd, /var/lib/containerd or /opt/cni;
# only the CNI plugins' result cache (/var/lib/cni/results) is host-global.
#
# Runtime handlers: "runc" (containerd's runc shim + pause, sandboxer
# podsandbox, the default) and one per line of MAGNETAR_SANDBOXERS (hack/lib.sh)
# whose binary exists in $ROOT/bin.
# Knobs: BRIDGE (mgbr0), SUBNET (10.233.0.0/16), CGROUP_PARENT, LOG_LEVEL
# (containerd, info), SANDBOXER_LOG_LEVEL (debug), SNAPSHOTTER (overlayfs),
# KEEP_BRIDGE=1, RUNC_BIN and CNI_BIN (see below), RUNSC_PLATFORM
# (magnetar-gvisor's runsc.platform, systrap), VMM_POOL_SIZE (magnetar-vmm's
# warm pool of VMs of the default shape, 0: off), and for a containerd
# configured from drop-ins: CONTAINERD_IMPORTS (files or globs), EXTRA_HANDLERS
# (the handlers they add), HARNESS_SANDBOXERS=none (no sandboxer of bin/) or
# a list of handlers (only those sandboxers; default: every one in bin/).
source "$(dirname "$0")/lib.sh"

BIN=$PREFIX/bin
# RUNC_BIN and CNI_BIN let hack/bench/profile.sh put timing wrappers in front
# of runc (for the runc shim and the runc sandboxer alike) and the CNI plugins
RUNC_BIN=${RUNC_BIN:-$BIN/runc}
CNI_BIN=${CNI_BIN:-$PREFIX/cni-bin}
IMAGES=${IMAGES:-$OUT/images}
PIDF=$WORK/run/containerd.pid
CFG=$WORK/etc/containerd.toml
ENVF=$WORK/etc/harness.env
CLOG=$WORK/logs/containerd.log
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/magnetar/pause:v1}
export PATH=$BIN:$PATH:/usr/local/sbin:/usr/sbin:/sbin

# Settings fixed at start are kept in etc/harness.env so that stop, status and
# the tests use the same ones.
if [ -f "$ENVF" ]; then source "$ENVF"; fi
BRIDGE=${BRIDGE:-mgbr0}
SUBNET=${SUBNET:-10.233.0.0/16}
LOG_LEVEL=${LOG_LEVEL:-info}
SANDBOXER_LOG_LEVEL=${SANDBOXER_LOG_LEVEL:-debug}
SNAPSHOTTER=${SNAPSHOTTER:-overlayfs}

crictl() { "$BIN/crictl" -c "$CRICTL_CONFIG" "$@"; }
ctr() { "$BIN/ctr" --address "$CSOCK" "$@"; }
alive() { [ -f "$1" ] && pid_alive "$(cat "$1")"; }

# cgroup driver: systemd only when PID 1 is systemd on a pure cgroup v2 host.
cgroup_setup() {
  CGROUP_DRIVER=cgroupfs
  if [ "$(cat /proc/1/comm)" = systemd ] && [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    CGROUP_DRIVER=systemd
  fi
  if [ -z "${CGROUP_PARENT:-}" ]; then
    local tag; tag=$(basename "$WORK" | tr -c 'a-zA-Z0-9\n' '_')
    if [ "$CGROUP_DRIVER" = systemd ]; then CGROUP_PARENT="magnetar_$tag.slice"; else CGROUP_PARENT="/magnetar-$tag"; fi
  fi
}

# sandboxers with a binary: prints "HANDLER BINARY" lines (none with
# HARNESS_SANDBOXERS=none: a containerd whose Magnetar configuration comes
# from CONTAINERD_IMPORTS alone, as the package test's; with a list of
# handlers, only those)
present_sandboxers() {
  local line name bin want=${HARNESS_SANDBOXERS:-}
  [ "$want" != none ] || return 0
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    if [ -n "$want" ] && [[ " $want " != *" $name "* ]]; then continue; fi
    [ -x "$ROOT/bin/$bin" ] || continue
    # the VM sandboxer needs the guest image: without it (no make
    # guest-image yet) it is left out unless asked for by name
    if [ "$name" = magnetar-vmm ] && [ ! -f "$GUEST_OUT/manifest.json" ]; then
      if [ -n "$want" ]; then die "magnetar-vmm: no guest image in $GUEST_OUT: run make guest-image"; fi
      continue
    fi
    # the gVisor sandboxer needs runsc (make tools)
    if [ "$name" = magnetar-gvisor ] && [ ! -x "$BIN/runsc" ]; then
      if [ -n "$want" ]; then die "magnetar-gvisor: no runsc in $BIN: run make tools"; fi
      continue
    fi
    # the Quark sandboxer needs a quark: the stand-in (make quark-standin)
    # unless QUARK_BIN names a real one
    if [ "$name" = magnetar-quark ] && [ ! -x "$QUARK_BIN" ]; then
      if [ -n "$want" ]; then die "magnetar-quark: no quark at $QUARK_BIN: run make quark-standin (or set QUARK_BIN)"; fi
      continue
    fi
    echo "$name $bin"
  done
}

# sandboxer_file HANDLER: the TOML config file of one sandboxer: the common
# keys (the Go profiles on a debug socket, which the e2e smoke suites read),
# then its own
sandboxer_file() {
  echo "debug_socket = \"$(debug_socket_of "$1")\""
  # UNSTARTED_GRACE: how soon a restarted daemon drops the sandboxes that
  # never started (the chaos run's short one; the daemon's default is 5m)
  if [ -n "${UNSTARTED_GRACE:-}" ]; then echo "unstarted_grace = \"$UNSTARTED_GRACE\""; fi
  # FORGOTTEN_CHECK: how often a daemon asks containerd which sandboxes it
  # still holds (the chaos run's short one; the daemon's default is 5m)
  if [ -n "${FORGOTTEN_CHECK:-}" ]; then echo "forgotten_check = \"$FORGOTTEN_CHECK\""; fi
  sandboxer_config "$1"
}

# sandboxer_config HANDLER: the sandboxer's own keys
sandboxer_config() {
  case "$1" in
  magnetar-runc)
    cat <<EOF
[runc]
binary = "$RUNC_BIN"
root = "$WORK/run/magnetar-runc/runc"
EOF
    ;;
  magnetar-wasm)
    cat <<EOF
# one daemon, two handlers: the proxy plugin name containerd sends picks the engine
[engines]
magnetar-wasm = "wasmtime"
magnetar-wasm-wazero = "wazero"
EOF
    ;;
  magnetar-vmm)
    cat <<EOF
run_dir = "$(run_dir_of vmm)"
[vm]
kernel = "$GUEST_OUT/vmlinuz"
initrd = "$GUEST_OUT/initramfs.cpio"
boot_timeout = "${VMM_BOOT_TIMEOUT:-90s}"
agent_log_level = "${VMM_AGENT_LOG_LEVEL:-info}"
[hypervisors]
magnetar-vmm = "qemu"
magnetar-clh = "cloud-hypervisor"
magnetar-stratovirt = "stratovirt"
# magnetar-clh's VMs: the stand-in (tests only; the real one needs KVM)
# with QEMU 7.2's virtiofsd
[cloud_hypervisor]
binary = "$CLH_STANDIN"
virtiofsd = "/usr/lib/qemu/virtiofsd"
# magnetar-stratovirt's VMs: the StratoVirt stand-in (the guidebook's command
# line and qmp.md's QMP over a QEMU TCG guest), QEMU 7.2's virtiofsd
[stratovirt]
binary = "$STRATOVIRT_STANDIN"
virtiofsd = "/usr/lib/qemu/virtiofsd"
EOF
    # VMM_POOL_SIZE > 0: a warm pool of that many VMs of the default shape
    # (the VM of a pod without limits: QEMU, vm.vcpus, vm.memory_mib)
    if [ "${VMM_POOL_SIZE:-0}" -gt 0 ]; then
      cat <<EOF
[pool]
refill_concurrency = 1
[[pool.shapes]]
size = $VMM_POOL_SIZE
EOF
    fi
    ;;
  magnetar-gvisor)
    cat <<EOF
[runsc]
binary = "$BIN/runsc"
platform = "${RUNSC_PLATFORM:-systrap}"
[pod]
pause_binary = "$ROOT/bin/magnetar-podinit"
EOF
    ;;
  magnetar-quark)
    # QUARK_BIN: Quark's qvisor; the tests use the stand-in (hack/standins/quark)
    cat <<EOF
run_dir = "$(run_dir_of quark)"
[quark]
binary = "$QUARK_BIN"
config_file = ""
start_timeout = "30s"
EOF
    ;;
  *) echo "# $1: defaults only" ;;
  esac
}


# present_handlers: "HANDLER SERVED_BY BINARY" for every runtime handler of a
# present sandboxer: its own (SERVED_BY = HANDLER) and its aliases
present_handlers() {
  local line name by pn pb
  while read -r pn pb; do
    echo "$pn $pn $pb"
    for line in "${MAGNETAR_HANDLER_ALIASES[@]}"; do
      read -r name by <<<"$line"
      if [ "$by" = "$pn" ]; then echo "$name $pn $pb"; fi
    done
  done < <(present_sandboxers)
}

write_config() {
  mkdir -p "$WORK"/{root,state,run,s,tmp,opt,lib,logs,cni-ipam,etc/cni/net.d,etc/certs.d} "$SHIM_SOCKETS"
  cgroup_setup
  # Without CAP_SYS_RESOURCE nobody may lower oom_score_adj and runc fails the
  # pause container ("failed to update /proc/self/oom_score_adj"); then clamp.
  local restrict_oom=false capeff systemd=false
  capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
  if (( (16#$capeff >> 24 & 1) == 0 )); then restrict_oom=true; fi
  if [ "$CGROUP_DRIVER" = systemd ]; then systemd=true; fi
  local handlers="runc${EXTRA_HANDLERS:+ $EXTRA_HANDLERS}" name bin imports="" i imp=()
  read -ra imp <<<"${CONTAINERD_IMPORTS:-}" # split on blanks, no globbing
  for i in "${imp[@]}"; do imports+="${imports:+, }\"$i\""; done
  local R="plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes"

  cat > "$CFG" <<EOF
# generated by hack/containerd.sh for WORK=$WORK
version = 3
root = "$WORK/root"
state = "$WORK/state"
temp = "$WORK/tmp"
${imports:+imports = [$imports]}

[grpc]
  address = "$CSOCK"
[ttrpc]
  address = "$CSOCK.ttrpc"
[debug]
  address = "$WORK/run/debug.sock"
  level = "$LOG_LEVEL"
[metrics]
  address = ""

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "$SNAPSHOTTER"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$WORK/etc/certs.d"

  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = $restrict_oom
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [$R.runc]
        runtime_type = "io.containerd.runc.v2"
        sandboxer = "podsandbox"
        [$R.runc.options]
          BinaryName = "$RUNC_BIN"
          Root = "$WORK/state/runc"
          SystemdCgroup = $systemd
EOF
  local by
  while read -r name by bin; do
    [ -n "$name" ] || continue
    handlers="$handlers $name"
    cat >> "$CFG" <<EOF
      [$R.$name]
        runtime_type = "io.containerd.$name.v1"
        runtime_path = "$ROOT/bin/$bin"
        sandboxer = "$name"
        disable_pause_image_pull = true
EOF
  done < <(present_handlers)
  cat >> "$CFG" <<EOF
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$CNI_BIN"]
      conf_dir = "$WORK/etc/cni/net.d"
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  [plugins.'io.containerd.internal.v1.opt']
    path = "$WORK/opt"
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = "$WORK/opt/image-verifier/bin"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "$SHIM_SOCKETS"
  [plugins.'io.containerd.transfer.v1.local']
    config_path = "$WORK/etc/certs.d"

[proxy_plugins]
EOF
  while read -r name by bin; do
    [ -n "$name" ] || continue
    cat >> "$CFG" <<EOF
  [proxy_plugins.$name]
    type = "sandbox"
    address = "$WORK/run/$by.sock"
EOF
    if [ "$name" = "$by" ]; then sandboxer_file "$name" > "$WORK/etc/$name.toml"; fi
  done < <(present_handlers)

  cat > "$WORK/etc/cni/net.d/10-magnetar.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "magnetar-$(basename "$WORK")",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$WORK/cni-ipam",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  cat > "$CRICTL_CONFIG" <<EOF
runtime-endpoint: unix://$CSOCK
image-endpoint: unix://$CSOCK
timeout: 60
debug: false
pull-image-on-create: false
EOF
  cat > "$ENVF" <<EOF
# written by hack/containerd.sh start; read by stop/status and the tests
BRIDGE=$BRIDGE
SUBNET=$SUBNET
CGROUP_DRIVER=$CGROUP_DRIVER
CGROUP_PARENT=$CGROUP_PARENT
HANDLERS="$handlers"
EOF
}

# --- sandboxer daemons ------------------------------------------------------

sb_require() {
  local bin
  bin=$(sandboxer_binary "$1") || die "unknown sandboxer handler $1 (known: ${MAGNETAR_SANDBOXERS[*]})"
  [ -x "$ROOT/bin/$bin" ] || die "bin/$bin missing: run make build"
  SB_BIN=$ROOT/bin/$bin
  SB_SOCK=$WORK/run/$1.sock
  SB_PIDF=$WORK/run/$1.pid
  SB_LOG=$WORK/logs/$1.log
}

# sb_start HANDLER: launch the daemon with the standard flags, wait until it listens
sb_start() {
  sb_require "$1"
  if alive "$SB_PIDF"; then log "$1 already running, pid $(cat "$SB_PIDF")"; return 0; fi
  mkdir -p "$WORK/lib/$1" "$WORK/run/$1" "$WORK/logs"
  [ -f "$WORK/etc/$1.toml" ] || sandboxer_file "$1" > "$WORK/etc/$1.toml"
  echo "=== $(date -Is) start $1" >> "$SB_LOG"
  setsid "$SB_BIN" --listen "$SB_SOCK" --dir "$WORK/lib/$1" --config "$WORK/etc/$1.toml" \
    --containerd-address "$CSOCK.ttrpc" --log-level "$SANDBOXER_LOG_LEVEL" \
    </dev/null >>"$SB_LOG" 2>&1 &
  echo $! > "$SB_PIDF"
  local i
  for i in $(seq 1 200); do
    if is_listening "$SB_SOCK"; then log "$1 pid $(cat "$SB_PIDF") listening on $SB_SOCK"; return 0; fi
    alive "$SB_PIDF" || break
    sleep 0.05
  done
  log "$1 did not come up (log $SB_LOG):"; tail -20 "$SB_LOG" >&2
  return 1
}

# sb_stop HANDLER [SIGNAL]: signal the daemon (TERM: wait up to 10 s, then KILL)
sb_stop() {
  alive "$WORK/run/$1.pid" || { rm -f "$WORK/run/$1.pid"; return 0; }
  pidfile_stop "$1" "$WORK/run/$1.pid" "${2:-TERM}"
  echo "=== $(date -Is) stopped $1 (SIG${2:-TERM})" >> "$WORK/logs/$1.log"
}

# --- containerd ---------------------------------------------------------------

cd_start() {
  if alive "$PIDF"; then log "containerd already running, pid $(cat "$PIDF")"; return 0; fi
  echo "=== $(date -Is) start" >> "$CLOG"
  # the sandboxers' -info (run by containerd) reads <daemon>.toml from here:
  # the drop-ins have no options table with a ConfigPath (deploy/templates)
  MAGNETAR_CONF_DIR=$WORK/etc setsid "$BIN/containerd" --config "$CFG" </dev/null >>"$CLOG" 2>&1 &
  echo $! > "$PIDF"
  local i
  for i in $(seq 1 300); do
    if [ -S "$CSOCK" ] && ctr version >/dev/null 2>&1; then break; fi
    alive "$PIDF" || break
    sleep 0.1
  done
  if ! ctr version >/dev/null 2>&1; then log "containerd did not come up (log $CLOG):"; tail -20 "$CLOG" >&2; return 1; fi
  # CRI answers once its plugin has recovered its pods and containers: it asks
  # each sandboxer for each pod's status and gives each container's task 10 s
  # (containerd's loadContainerTimeout), so allow CRI_WAIT (default 60) s
  local t0=$SECONDS dumped=0
  while [ $((SECONDS - t0)) -lt "${CRI_WAIT:-60}" ]; do
    crictl info >/dev/null 2>&1 && break
    # slow: keep what the daemons were doing meanwhile (containerd waits on them)
    if [ "$dumped" = 0 ] && [ $((SECONDS - t0)) -ge 5 ]; then dumped=1; dump_daemons; fi
    sleep 0.1
  done
  if ! crictl info >/dev/null; then
    log "CRI not ready $((SECONDS - t0)) s after containerd answered (log $CLOG); its errors since this start:"
    cd_start_errors >&2
    return 1
  fi
  if [ $((SECONDS - t0)) -ge 5 ]; then
    log "slow: CRI ready $((SECONDS - t0)) s after containerd answered; its errors since this start:"
    cd_start_errors >&2
  fi
  log "containerd pid $(cat "$PIDF") socket $CSOCK"
}

# dump_daemons: the goroutines of containerd and of every running daemon
# (their debug sockets) into $WORK/logs/<name>.goroutines.<time>
dump_daemons() {
  local sock name f
  for sock in "$WORK/run/debug.sock" "$WORK"/run/*-debug.sock; do
    [ -S "$sock" ] || continue
    name=$(basename "$sock" -debug.sock)
    [ "$name" = debug.sock ] && name=containerd
    f=$WORK/logs/$name.goroutines.$(date +%H%M%S)
    curl -sS --max-time 5 --unix-socket "$sock" -o "$f" 'http://magnetar/debug/pprof/goroutine?debug=2' || continue
    log "slow: $name's goroutines in $f"
    # where CRI's recovery waits (the log goes with a CI run's clone)
    if [ "$name" = containerd ]; then
      awk -v RS= '/criService\).recover|loadContainer/' "$f" | head -80 | sed 's/^/  /' >&2
    fi
  done
}

# cd_start_errors: the last 30 errors and warnings of containerd's log since
# its last start
cd_start_errors() {
  awk '/^=== .* start$/ {n = 0} / level=(error|warning|fatal) / {l[n++] = $0} END {for (i = (n > 30 ? n - 30 : 0); i < n; i++) print "  " l[i]}' "$CLOG"
}

cd_stop() { pidfile_stop containerd "$PIDF" "${1:-TERM}"; } # cd_stop [SIGNAL]

import_images() {
  local t n=0
  for t in busybox web pause; do
    [ -f "$IMAGES/$t.tar" ] || continue
    ctr -n k8s.io images import --platform linux/amd64 "$IMAGES/$t.tar" >/dev/null 2>>"$WORK/logs/ctr-import.log" ||
      { tail -5 "$WORK/logs/ctr-import.log" >&2; die "import of $IMAGES/$t.tar failed"; }
    n=$((n + 1))
  done
  log "imported $n images"
}

# live processes whose executable is in $ROOT/bin or $PREFIX/bin and whose
# command line names this WORK (daemon helpers, shims, runc)
our_helpers() {
  local d p exe
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$exe" in "$ROOT/bin/"*|"$(readlink -f "$PREFIX/bin")/"*|"$MAGNETAR_TOOLS/"*) ;; *) continue ;; esac
    if tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -qF -- "$WORK/" && pid_alive "$p"; then echo "$p"; fi
  done
}

cleanup_leftovers() {
  local p pids i d
  # shims of ours that outlived containerd
  pids=$(our_shims)
  if [ -n "$pids" ]; then log "killing leftover shims: $pids"; kill -TERM $pids 2>/dev/null || true; fi
  for i in $(seq 1 20); do [ -z "$(our_shims)" ] && break; sleep 0.1; done
  pids=$(our_shims); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  # helpers of our daemons that outlived them (any process run from our bin
  # dirs whose command line names this WORK), e.g. a sandboxer's task keeper
  pids=$(our_helpers)
  if [ -n "$pids" ]; then
    log "killing leftover helpers: $(for p in $pids; do tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | cut -c1-80; echo " (pid $p);"; done | tr -d '\n')"
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 20); do [ -z "$(our_helpers)" ] && break; sleep 0.1; done
    pids=$(our_helpers); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  # container processes still in our pods' cgroups (e.g. a sandboxer was killed)
  for _ in 1 2 3; do
    pids=$(cgroup_parent_dirs | while read -r d; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
    [ -n "$pids" ] || break
    log "killing leftover processes in $CGROUP_PARENT: $(echo $pids)"
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  # runc state left in our runc roots
  for d in "$WORK/state/runc" "$WORK"/run/*/runc; do
    [ -d "$d" ] || continue
    for p in $("$BIN/runc" --root "$d" list -q 2>/dev/null); do
      "$BIN/runc" --root "$d" delete -f "$p" >/dev/null 2>&1 || true
    done
  done
  # mounts below WORK: overlay rootfs, netns, shm, bind-mounted namespaces
  local mnts
  mnts=$(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
  if [ -n "$mnts" ]; then
    log "unmounting $(echo "$mnts" | wc -l) leftover mounts below $WORK"
    for p in $mnts; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
  fi
  # empty cgroup dirs we created (deepest first); non-empty ones stay
  cgroup_parent_dirs | while read -r d; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  # the CNI bridge plugin never deletes its bridge: remove ours once it has no ports
  if [ "${KEEP_BRIDGE:-0}" != 1 ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    if [ -z "$(ip link show master "$BRIDGE")" ]; then ip link del "$BRIDGE" 2>/dev/null || true
    else log "bridge $BRIDGE still has ports, kept"; fi
  fi
}

do_start() {
  [ -x "$BIN/containerd" ] && [ -x "$BIN/crictl" ] && [ -x "$BIN/runc" ] && [ -x "$CNI_BIN/bridge" ] ||
    die "test tools missing in $PREFIX: run make tools (hack/install-tools.sh)"
  [ -f "$IMAGES/busybox.tar" ] && [ -f "$IMAGES/pause.tar" ] || "$ROOT/hack/images.sh"
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [ -n "$(ip link show master "$BRIDGE")" ]; then
    log "warning: bridge $BRIDGE already has ports: if another harness uses it, give this one its own BRIDGE= and SUBNET="
  fi
  # a subnet routed through another interface (another harness's bridge)
  # would make this one's pods unreachable ("no route to host") at random
  local other
  other=$(ip -o -4 addr show 2>/dev/null | awk -v b="$BRIDGE" -v net="${SUBNET%.*.*/*}." '$2 != b && index($4, net) == 1 {print $2; exit}')
  [ -z "$other" ] || die "SUBNET $SUBNET is already used by interface $other (another harness?): give this one its own BRIDGE= and SUBNET= (hack/README.md lists the taken ones)"
  write_config
  local line name bin
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    if [ ! -x "$ROOT/bin/$bin" ]; then
      log "bin/$bin missing: run make build (runtime handler $name not configured)"
    fi
  done
  # sandboxers first: on a containerd restart CRI asks them about known pods at once
  while read -r name bin; do
    [ -n "$name" ] || continue
    sb_start "$name" || { do_stop; die "sandboxer $name failed to start"; }
  done < <(present_sandboxers)
  cd_start || { do_stop; die "containerd failed to start"; }
  import_images
  source "$ENVF"
  log "runtime handlers: $HANDLERS (WORK=$WORK, bridge $BRIDGE $SUBNET, cgroup parent $CGROUP_PARENT)"
}

do_stop() {
  if alive "$PIDF"; then
    timeout 180 "$BIN/crictl" -c "$CRICTL_CONFIG" rmp -fa >/dev/null 2>&1 || log "crictl rmp -fa failed"
  fi
  cd_stop TERM
  local line name bin
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    sb_stop "$name" TERM
  done
  cleanup_leftovers
  # the shim socket dir outside WORK (a long WORK) goes once it is empty
  case "$SHIM_SOCKETS" in /run/magnetar-harness/?*) rmdir "$SHIM_SOCKETS" 2>/dev/null || true ;; esac
  log "stopped (WORK=$WORK)"
}

do_status() {
  local line name bin
  if alive "$PIDF"; then echo "containerd: running, pid $(cat "$PIDF")"; else echo "containerd: not running"; fi
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    if alive "$WORK/run/$name.pid"; then echo "$name: running, pid $(cat "$WORK/run/$name.pid")"
    elif [ -x "$ROOT/bin/$bin" ]; then echo "$name: not running"
    else echo "$name: bin/$bin missing (make build)"; fi
  done
  echo "shims: $(our_shims | wc -l)"
  echo "handlers: ${HANDLERS:-?}"
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
reset)
  do_stop
  if awk -v w="$WORK/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/mounts; then die "mounts left below $WORK, not wiping"; fi
  rm -rf "${WORK:?}"/{root,state,run,s,tmp,opt,lib,cni-ipam}
  case "$SHIM_SOCKETS" in /run/magnetar-harness/?*) rm -rf "$SHIM_SOCKETS" ;; esac
  rm -f "$ENVF"
  log "reset $WORK" ;;
status) do_status ;;
config) write_config; cat "$CFG" ;;
sandboxer-start) sb_start "${2:?handler}" ;;
sandboxer-stop) sb_stop "${2:?handler}" TERM ;;
sandboxer-kill) sb_stop "${2:?handler}" KILL ;;
sandboxer-restart) sb_stop "${2:?handler}" TERM; sb_start "$2" ;;
# sandboxer-reconfigure HANDLER: stop the daemon, write its configuration
# again from the environment (e.g. VMM_POOL_SIZE), start it
sandboxer-reconfigure)
  sb_stop "${2:?handler}" TERM
  sandboxer_file "$2" > "$WORK/etc/$2.toml"
  sb_start "$2" ;;
containerd-start) cd_start ;;
containerd-kill) cd_stop KILL ;;
containerd-restart) cd_stop TERM; cd_start ;;
*) echo "usage: $0 start|stop|reset|status|config|sandboxer-{start,stop,kill,restart,reconfigure} HANDLER|containerd-{start,kill,restart}" >&2; exit 2 ;;
esac
