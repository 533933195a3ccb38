#!/usr/bin/env bash
# hack/quark/e2e/sandboxkill.sh: the pod's Quark sandbox process killed from
# outside (SIGKILL, as the OOM killer or an operator would): the pod turns
# NOTREADY (Controller.Wait returns), its containers are reported exited
# (255: lost with their kernel), their logs keep what they wrote; removing the
# pod works and leaves nothing of it (process, mount, socket, run directory,
# state, cgroup); a new pod runs.
#
#   RUNTIME_HANDLER=magnetar-quark [WORK=...] hack/quark/e2e/sandboxkill.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

TICK='["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.2; done"]'
kill_sandbox() { kill -KILL "$QPID"; }
notready() { wait_pod_state "$POD" SANDBOX_NOTREADY 20; }
ctrs_exited() {
  local c
  for c in "$C1" "$C2"; do wait_ctr_state "$c" CONTAINER_EXITED 20; done
  expect_eq "exit code of $C1" "$(ctr_field "$C1" .status.exitCode)" 255
}
logs_kept() { expect_match "ticker log" "$(crictl logs "$C1" 2>/dev/null)" "^tick-1$"; }
pod_cgroup_procs() { cat /sys/fs/cgroup/*/"$CGROUP_PARENT"/magnetar-quark-"$POD"/cgroup.procs 2>/dev/null || true; }
nothing_left() {
  wait_for 10 sh -c "! kill -0 $QPID 2>/dev/null" || fail "sandbox process $QPID still there"
  [ ! -e "$SB_DIR/sandboxes/$POD" ] || fail "$SB_DIR/sandboxes/$POD stays"
  [ ! -e "$SB_DIR/state/$POD.json" ] || fail "the pod's record stays"
  ! awk -v d="$SB_DIR/sandboxes/$POD" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo || fail "mounts stay below $SB_DIR/sandboxes/$POD"
  [ -z "$(pod_cgroup_procs)" ] || fail "processes in the pod's cgroup: $(pod_cgroup_procs)"
  ! ls -d /sys/fs/cgroup/*/"$CGROUP_PARENT"/magnetar-quark-"$POD" 2>/dev/null || fail "the pod's cgroup stays"
  ! grep -rl -- "--id $POD " "$(run_dir_of quark)" 2>/dev/null || fail "the pod's run directory (task socket, pid file) stays"
}
new_pod() {
  local p c
  p=$(run_pod again)
  c=$(start_ctr "$p" again c "$BUSYBOX_IMAGE" '["sleep", "3600"]')
  wait_ctr_state "$c" CONTAINER_RUNNING 10
  expect_eq "exec in a new pod" "$(exec_out "$c" echo ok)" ok
  crictl rmp -f "$p" >/dev/null
}

req  "runp" run_pod victim; POD=$LAST
req  "a ticking container" start_ctr "$POD" victim c1 "$BUSYBOX_IMAGE" "$TICK"; C1=$LAST
req  "a sleeping container" start_ctr "$POD" victim c2 "$BUSYBOX_IMAGE" '["sleep", "3600"]'; C2=$LAST
step "both running" wait_ctr_state "$C2" CONTAINER_RUNNING 10
req  "the sandbox process" sandbox_pid "$POD"; QPID=$LAST
step "kill -9 the sandbox process" kill_sandbox
step "pod NOTREADY" notready
step "containers EXITED, 255" ctrs_exited
step "the logs keep what was written" logs_kept
step "stopp" crictl stopp "$POD"
step "rmp" crictl rmp "$POD"
step "nothing of the pod left: process, mounts, cgroup, run dir, state" nothing_left
step "a new pod runs" new_pod
