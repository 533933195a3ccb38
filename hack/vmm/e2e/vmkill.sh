#!/usr/bin/env bash
# hack/vmm/e2e/vmkill.sh: a VM killed from outside (SIGKILL to its VMM):
# the pod turns NOTREADY (Controller.Wait returns), its container is reported
# exited, removing the pod works and leaves no VM process, socket or mount;
# a new pod runs. The VMM is QEMU on magnetar-vmm, StratoVirt's daemon on
# magnetar-stratovirt (here its stand-in, whose QEMU must die with it, as a
# real StratoVirt's guest does).
#
#   RUNTIME_HANDLER=magnetar-vmm [WORK=...] hack/vmm/e2e/vmkill.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

SLEEP='["sh", "-c", "exec sleep 3600"]'
# vm_dir: the VM's run directory, from the virtiofsd of the pod's share
# (source=<dir>/sandboxes/<id>/share, --socket-path=<run dir>/virtiofs.sock)
vm_dir() {
  local pid
  pid=$(pgrep -f -- "[s]andboxes/$POD_ID/" | head -1)
  [ -n "$pid" ] || return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's|^--socket-path=\(.*\)/virtiofs.sock$|\1|p'
}
# vm_pids: the VMM of this pod (QEMU: -name guest=<id>; StratoVirt, which
# has no -name: the processes naming its run directory), the virtiofsd of
# its share
vm_pids() {
  pgrep -f -- "[g]uest=$POD_ID|[s]andboxes/$POD_ID/" || true
  if [ -n "${VMDIR:-}" ]; then pgrep -f -- "$VMDIR/" || true; fi
}
vmm_pid() {
  local pid
  VMDIR=$(vm_dir)
  [ -n "$VMDIR" ] || fail "no virtiofsd naming $POD_ID"
  [ "$(vm_pids | sort -u | wc -l)" -ge 2 ] || fail "want a VMM and a virtiofsd of $POD_ID, got: $(vm_pids | sort -u | tr '\n' ' ')"
  case "$RUNTIME_HANDLER" in
  magnetar-stratovirt) pid=$(pgrep -f -- "-pidfile $VMDIR/stratovirt.pid" | head -1) ;;
  *) pid=$(pgrep -f -- "[g]uest=$POD_ID" | head -1) ;;
  esac
  [ -n "$pid" ] || fail "no VMM process of $POD_ID"
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
req  "the VM's VMM process" vmm_pid; QPID=$LAST; VMDIR=$(vm_dir)
step "kill -9 the VMM" kill_vm
step "pod NOTREADY" notready
step "container EXITED" ctr_exited
step "rmp -f" crictl rmp -f "$POD"
step "no VM process of the pod left" no_vm_left
step "a new pod runs" new_pod
