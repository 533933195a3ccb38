#!/usr/bin/env bash
# hack/vmm/e2e/pool.sh: magnetar-vmm's warm pool ([pool], the harness's
# VMM_POOL_SIZE; e2e-all.sh reconfigures the daemon with a pool of 2 before
# it runs this suite). Checks:
#   - pods take ready VMs from the pool (inspectp names the pool VM), each a
#     VM of its own, with boot ids and random bytes of their own;
#   - a burst of more pods than the pool holds: every pod runs, the ones the
#     pool cannot serve boot their own VM;
#   - kill -9 of the daemon with a full pool: after its restart no VM of the
#     old pool is left, the pods that took pool VMs still run, and the pool
#     fills again.
#
#   RUNTIME_HANDLER=magnetar-vmm [WORK=...] hack/vmm/e2e/pool.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

CD=$ROOT/hack/containerd.sh
SLEEP='["sh", "-c", "exec sleep 3600"]'
RUN_DIR=$(run_dir_of vmm)
SIZE=${VMM_POOL_SIZE:-2}

# ready_vms: run directories of pool VMs whose agent answered and that no
# pod claimed
ready_vms() {
  local d
  for d in "$RUN_DIR"/pool-*; do
    [ -f "$d/ready" ] && [ ! -f "$d/claim" ] && echo "$d"
  done
  return 0
}
pool_full() { [ "$(ready_vms | wc -l)" -ge "$SIZE" ]; }
# pool_vm POD: the pool VM the pod took ("" if it booted its own)
pool_vm() { crictl inspectp "$1" | grep -o 'pool-[0-9a-f]\{11\}' | head -1 || true; }
# vmm_pids_of DIRS...: the processes naming those run directories
pids_of() { local d; for d in "$@"; do pgrep -f -- "$d/" || true; done; }

warm_pod() {
  local name=$1 p c vm
  p=$(run_pod "$name")
  vm=$(pool_vm "$p")
  [ -n "$vm" ] || fail "pod $name did not take a pool VM"
  c=$(start_ctr "$p" "$name" c "$BUSYBOX_IMAGE" "$SLEEP")
  wait_ctr_state "$c" CONTAINER_RUNNING 60
  echo "$p $c $vm"
}
guest_id() { exec_out "$1" sh -c 'cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"'; }
differ() {
  local a b
  a=$(guest_id "$1"); b=$(guest_id "$2")
  [ -n "$a" ] && [ "$a" != "$b" ] || fail "two pool VMs: '$a' and '$b'"
}
burst() {
  local i pids=() p n=$((SIZE + 1)) warm=0 cold=0
  for i in $(seq 1 "$n"); do
    ( run_pod "burst$i" > "$T/burst$i.id" ) & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail "a pod of the burst did not start"; done
  for i in $(seq 1 "$n"); do
    p=$(cat "$T/burst$i.id")
    is_pod_state "$p" SANDBOX_READY || fail "burst pod $i not ready"
    if [ -n "$(pool_vm "$p")" ]; then warm=$((warm + 1)); else cold=$((cold + 1)); fi
    crictl rmp -f "$p" >/dev/null
  done
  echo "$warm from the pool, $cold booted"
  [ "$cold" -ge 1 ] || fail "$n pods against a pool of $SIZE: none booted its own VM"
  [ "$warm" -ge 1 ] || fail "no pod of the burst took a pool VM"
}
kill_restart() {
  local old
  old=$(ready_vms)
  [ -n "$old" ] || fail "no ready pool VM before the kill"
  # shellcheck disable=SC2086
  pids_of $old > "$T/old.pids"
  [ -s "$T/old.pids" ] || fail "no process of the ready pool VMs"
  "$CD" sandboxer-kill "$DAEMON_HANDLER" 2>&1
  "$CD" sandboxer-start "$DAEMON_HANDLER" 2>&1
  echo "$old" > "$T/old.dirs"
}
old_gone() {
  local p
  while read -r p; do ! pid_alive "$p" || return 1; done < "$T/old.pids"
  while read -r p; do [ ! -e "$p" ] || return 1; done < "$T/old.dirs"
}

req  "the pool fills ($SIZE VMs)" wait_for 240 pool_full
req  "a pod from the pool" warm_pod warm1; read -r P1 C1 VM1 <<<"$LAST"
req  "another pod from the pool" warm_pod warm2; read -r P2 C2 VM2 <<<"$LAST"
step "a VM each" expect_nomatch "pool VMs" "$VM1" "^$VM2\$"
step "boot ids and random bytes of their own" differ "$C1" "$C2"
step "exec in a pool VM's container" expect_eq "exec" "$(exec_out "$C1" echo ok)" ok
req  "the pool fills again" wait_for 240 pool_full
step "a burst of $((SIZE + 1)) pods" burst
req  "the pool fills again" wait_for 240 pool_full
req  "kill -9 the daemon with a full pool, start it" kill_restart
step "no VM of the old pool left" wait_for 30 old_gone
step "pods from the pool still run" expect_eq "exec" "$(exec_out "$C2" echo ok)" ok
step "the pool fills after the restart" wait_for 240 pool_full
step "remove the pods" crictl rmp -f "$P1" "$P2"
