#!/usr/bin/env bash
# hack/vmm/e2e/vmkill.sh: a VM killed from outside (SIGKILL to its VMM: the
# QEMU of magnetar-vmm; the cloud-hypervisor of magnetar-clh and the
# StratoVirt daemon of magnetar-stratovirt, here their stand-ins, whose death
# must take their QEMU with them as the real ones' ends the guest): the pod turns NOTREADY (Controller.Wait returns), its container
# is reported exited, removing the pod works and leaves no VM process, socket
# or mount; a new pod runs.
#
#   RUNTIME_HANDLER=magnetar-vmm|magnetar-clh|magnetar-stratovirt [WORK=...] hack/vmm/e2e/vmkill.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

SLEEP='["sh", "-c", "exec sleep 3600"]'
RUN_DIR="" POOL_VM=""
# fsd_pids: the virtiofsd of the pod's share (source=<dir>/sandboxes/<id>/share,
# or <dir>/pool/<pool VM>/share for a VM from the warm pool; QEMU 7.2's
# forks once into its sandbox)
fsd_pids() {
  if [ -n "$POOL_VM" ]; then pgrep -f -- "[p]ool/$POOL_VM/share" || true
  else pgrep -f -- "[s]andboxes/$POD_ID/" || true; fi
}
# vm_pids: virtiofsd and every process naming the VM's run directory (the
# VMM, and the stand-in's QEMU)
vm_pids() {
  fsd_pids
  if [ -n "$RUN_DIR" ]; then pgrep -f -- "$RUN_DIR/" || true; fi
}
# vmm_pid: prints "PID RUN_DIR" of the VMM: of the processes naming the run
# directory (where virtiofsd's --socket-path is), the one that is neither
# virtiofsd nor the child of another (the stand-in's QEMU)
vmm_pid() {
  local fsd sock dir pids p out=""
  fsd=$(fsd_pids)
  [ -n "$fsd" ] || fail "no virtiofsd naming $POD_ID"
  sock=$(tr '\0' '\n' <"/proc/$(head -1 <<<"$fsd")/cmdline" | sed -n 's/^--socket-path=//p')
  [ -n "$sock" ] || fail "virtiofsd has no --socket-path"
  dir=$(dirname "$sock")
  pids=$(pgrep -f -- "$dir/" | grep -vxF "$fsd" || true)
  for p in $pids; do
    grep -qx "$(ps -o ppid= -p "$p" | tr -d ' ')" <<<"$pids" || out+="$p "
  done
  [ "$(wc -w <<<"$out")" -eq 1 ] || fail "want one VMM process naming $dir/, got: $out(all: $(tr '\n' ' ' <<<"$pids"))"
  echo "${out% } $dir"
}
no_vm_pids() { [ -z "$(vm_pids)" ]; }
kill_vm() { kill -KILL "$VPID"; }
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
# the pool VM the pod took, if the daemon keeps a warm pool (inspectp's info)
POOL_VM=$(crictl inspectp "$POD" | grep -o 'pool-[0-9a-f]\{11\}' | head -1 || true)
req  "container" start_ctr "$POD" victim c "$BUSYBOX_IMAGE" "$SLEEP"; C=$LAST
req  "container running" wait_ctr_state "$C" CONTAINER_RUNNING 30
req  "the VM's VMM process" vmm_pid; read -r VPID RUN_DIR <<<"$LAST"
step "kill -9 the VMM" kill_vm
step "pod NOTREADY" notready
step "container EXITED" ctr_exited
step "rmp -f" crictl rmp -f "$POD"
step "no VM process of the pod left" no_vm_left
step "a new pod runs" new_pod
