#!/usr/bin/env bash
# hack/quark/e2e/mapping.sh: what the quark sandboxer does for Quark, seen on
# the host and from the container, against the stand-in (which refuses, and
# logs as REFUSED, any path outside its sandbox root):
#   - quark ran as Kuasar runs it: `quark -r <bundle> sandbox --task-socket
#     <sock> --id <pod> --pid-file <file>`, from the bundle; the sandbox
#     process is in the pod's cgroup, and containerd names the pod's
#     namespaces by its pid in the containers' specs
#   - a container's bundle is <bundle>/<id> (config.json, rootfs mounted,
#     containerd's stdout and stderr FIFOs bound at <bundle>/<id>/stdout and
#     stderr); its volume and the pod's /etc files are bound inside its
#     rootfs, config.json keeps no bind of a host path
#   - the container sees its volume, the pod's hostname, /etc/hosts and
#     resolv.conf; its log holds stdout and stderr apart
#   - no request was refused; containers removed, nothing of them stays
#
#   RUNTIME_HANDLER=magnetar-quark [WORK=...] hack/quark/e2e/mapping.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

bundle() { pod_bundle "$POD"; }
mounted() { awk -v m="$1" '$5 == m {f=1} END {exit !f}' /proc/self/mountinfo; }

check_command_line() {
  local line want
  line=$(grep 'msg="quark command"' "$RUN/quark-standin.log" | tail -1)
  want="-r $(bundle) sandbox --task-socket $RUN/task.sock --id $POD --pid-file $RUN/quark.pid"
  [[ "$line" == *"args=\"$want\" cwd=\"$(bundle)\""* ]] || fail "quark ran as: $line; want args \"$want\" from $(bundle)"
  echo "$line"
}
check_cgroup() { expect_match "the sandbox process's cgroup" "$(cat "/proc/$QPID/cgroup")" "magnetar-quark-$POD"; }
create_ctr() {
  local f
  mkdir -p "$T/vol"; echo volume-data > "$T/vol/v"
  f=$(ctr_json qmap c "$BUSYBOX_IMAGE" '["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 3600"]' \
    "\"mounts\": [{ \"container_path\": \"/data\", \"host_path\": \"$T/vol\", \"readonly\": true }]")
  crictl create "$POD" "$f" "$T/qmap.pod.json"
}
check_bundle() {
  local d=$(bundle)/$C m
  [ -f "$d/config.json" ] || fail "no $d/config.json"
  for m in rootfs stdout stderr rootfs/data rootfs/etc/hosts rootfs/etc/hostname rootfs/etc/resolv.conf; do
    mounted "$d/$m" || fail "$d/$m is not mounted"
  done
  [ "$(stat -c %F "$d/stdout")" = fifo ] || fail "$d/stdout is a $(stat -c %F "$d/stdout"), not containerd's FIFO"
  jq -e '[.mounts[] | select(.type == "bind" and (.source | startswith("/") ) and (.source | startswith("/'"$C"'/") | not))] | length == 0' "$d/config.json" >/dev/null ||
    fail "config.json keeps binds of host paths: $(jq -c '[.mounts[] | select(.type == "bind")]' "$d/config.json")"
  expect_eq "root.path" "$(jq -r .root.path "$d/config.json")" rootfs
  # containerd names the pod's namespaces by the pid Controller.Start returned
  expect_eq "the namespaces config.json names" "$(jq -r '[.linux.namespaces[] | select(.path != null and .path != "") | .path] | sort | join(" ")' "$d/config.json")" \
    "/proc/$QPID/ns/ipc /proc/$QPID/ns/net /proc/$QPID/ns/pid /proc/$QPID/ns/uts"
}
check_inside() {
  expect_eq "the volume" "$(exec_out "$C" cat /data/v)" volume-data
  expect_eq "hostname" "$(exec_out "$C" hostname)" qmap
  expect_match "/etc/hosts" "$(exec_out "$C" cat /etc/hosts)" "qmap"
  expect_match "/etc/resolv.conf" "$(exec_out "$C" cat /etc/resolv.conf)" "nameserver"
}
check_logs() {
  expect_eq "stdout log" "$(crictl logs "$C" 2>/dev/null)" to-stdout
  expect_eq "stderr log" "$(crictl logs "$C" 2>&1 >/dev/null)" to-stderr
}
no_refusal() {
  ! grep REFUSED "$RUN/quark-standin.log" || fail "the stand-in refused requests"
  grep -q 'sandbox serving Task API v2' "$RUN/quark-standin.log" || fail "no 'serving Task API v2' in the stand-in's log"
}
rm_ctr() {
  crictl stop -t 0 "$C" >/dev/null
  crictl rm "$C" >/dev/null
  [ ! -e "$(bundle)/$C" ] || fail "$(bundle)/$C stays after rm"
  ! awk -v d="$(bundle)/$C/" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo || fail "mounts stay below $(bundle)/$C"
}
pod_gone() {
  crictl rmp -f "$POD" >/dev/null
  [ ! -e "$SB_DIR/sandboxes/$POD" ] || fail "$SB_DIR/sandboxes/$POD stays"
  [ ! -e "$RUN" ] || fail "the run directory $RUN stays"
}

req  "runp" run_pod qmap; POD=$LAST
req  "the pod's run directory" pod_run_dir "$POD"; RUN=$LAST
req  "quark's command line is Kuasar's" check_command_line
req  "the sandbox process" sandbox_pid "$POD"; QPID=$LAST
step "the sandbox process is in the pod's cgroup" check_cgroup
req  "create with a read-only volume" create_ctr; C=$LAST
req  "start" crictl start "$C"
step "running" wait_ctr_state "$C" CONTAINER_RUNNING 10
step "the container's bundle in the sandbox root: rootfs, FIFOs, volume and pod files mounted; no host bind in config.json" check_bundle
step "the container sees its volume and the pod's identity" check_inside
step "logs: stdout and stderr apart" check_logs
step "the stand-in refused nothing" no_refusal
step "rm: the container's bundle goes" rm_ctr
step "rmp: the pod's directories go" pod_gone
