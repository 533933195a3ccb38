#!/usr/bin/env bash
# hack/gvisor/e2e/sandboxkill.sh: a pod's sandbox killed from outside
# (SIGKILL to its runsc-sandbox, as the OOM killer would): the pod turns
# NOTREADY (Controller.Wait returns), its container is reported exited,
# removing the pod works and leaves no runsc process, mount or state; a new
# pod runs.
#
#   RUNTIME_HANDLER=magnetar-gvisor [WORK=...] hack/gvisor/e2e/sandboxkill.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

SLEEP='["sh", "-c", "exec sleep 3600"]'
root() { echo "$WORK/lib/$RUNTIME_HANDLER/sandboxes/$POD/runsc"; }
runsc_pids() { pgrep -f -- "--root=$(root)( |$)" || true; }
sandbox_pid() {
  local p
  for p in $(runsc_pids); do
    if [ "$(tr '\0' ' ' < "/proc/$p/cmdline" | awk '{print $1}')" = runsc-sandbox ]; then echo "$p"; return 0; fi
  done
  fail "no runsc-sandbox naming $(root)"
}
kill_sandbox() { kill -KILL "$SPID"; }
notready() { wait_pod_state "$POD" SANDBOX_NOTREADY 20; }
ctr_exited() { wait_ctr_state "$C" CONTAINER_EXITED 20; }
no_runsc() { [ -z "$(runsc_pids)" ]; }
rmp_clean() {
  crictl rmp -f "$POD" >/dev/null
  wait_for 10 no_runsc
  [ ! -d "$WORK/lib/$RUNTIME_HANDLER/sandboxes/$POD" ] || fail "the pod's directory is left"
  expect_eq "mounts of the pod" "$(grep -c -- "sandboxes/$POD" /proc/mounts || true)" 0
}
new_pod() {
  local p c
  p=$(run_pod again)
  c=$(start_ctr "$p" again c "$BUSYBOX_IMAGE" "$SLEEP")
  wait_ctr_state "$c" CONTAINER_RUNNING 30
  expect_eq "exec in a new pod" "$(exec_out "$c" echo ok)" ok
  crictl rmp -f "$p" >/dev/null
}

req  "runp" run_pod victim; POD=$LAST
req  "container" start_ctr "$POD" victim c "$BUSYBOX_IMAGE" "$SLEEP"; C=$LAST
req  "container running" wait_ctr_state "$C" CONTAINER_RUNNING 30
req  "the pod's runsc-sandbox" sandbox_pid; SPID=$LAST
step "kill -9 runsc-sandbox" kill_sandbox
step "pod NOTREADY" notready
step "container EXITED" ctr_exited
step "rmp -f: nothing of the pod left" rmp_clean
step "a new pod runs" new_pod
