#!/usr/bin/env bash
# hack/vmm/e2e/vmkill.sh: a VM killed from outside (SIGKILL to its QEMU):
# the pod turns NOTREADY (Controller.Wait returns), its container is reported
# exited, removing the pod works and leaves no VM process, socket or mount;
# a new pod runs.
#
#   RUNTIME_HANDLER=magnetar-vmm [WORK=...] hack/vmm/e2e/vmkill.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

SLEEP='["sh", "-c", "exec sleep 3600"]'
# vm_pids: the QEMU of this pod (its -name guest=<id>) and the virtiofsd of
# its share (source=<dir>/sandboxes/<id>/share)
vm_pids() { pgrep -f -- "[g]uest=$POD_ID|[s]andboxes/$POD_ID/" || true; }
qemu_pid() {
  local pid
  [ "$(vm_pids | wc -l)" -ge 2 ] || fail "want a QEMU and a virtiofsd naming $POD_ID, got: $(vm_pids | tr '\n' ' ')"
  pid=$(pgrep -f -- "[g]uest=$POD_ID" | head -1)
  [ -n "$pid" ] || fail "no QEMU process naming $POD_ID"
  echo "$pid"
}
no_vm_pids() { [ -z "$(vm_pids)" ]; }
kill_vm() { kill -KILL "$QPID"; }
notready() { wait_pod_state "$POD" SANDBOX_NOTREADY 20; }
ctr_exited() { wait_ctr_state "$C" CONTAINER_EXITED 20; }
no_vm_left() { wait_for 10 no_vm_pids; }
new_pod() {
  local p c
  p=$(run_pod again)
  c=$(start_ctr "$p" again c "$BUSYBOX_IMAGE" "$SLEEP")
  wait_ctr_state "$c" CONTAINER_RUNNING 30
  expect_eq "exec in a new pod" "$(exec_out "$c" echo ok)" ok
  crictl rmp -f "$p" >/dev/null
}

req  "runp" run_pod victim; POD=$LAST; POD_ID=$POD
req  "container" start_ctr "$POD" victim c "$BUSYBOX_IMAGE" "$SLEEP"; C=$LAST
req  "container running" wait_ctr_state "$C" CONTAINER_RUNNING 30
req  "the VM's QEMU process" qemu_pid; QPID=$LAST
step "kill -9 QEMU" kill_vm
step "pod NOTREADY" notready
step "container EXITED" ctr_exited
step "rmp -f" crictl rmp -f "$POD"
step "no VM process of the pod left" no_vm_left
step "a new pod runs" new_pod
