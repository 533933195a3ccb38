#!/usr/bin/env bash
# hack/vmm/e2e-all.sh: the VM end-to-end stage of `make test` (make vmm-e2e),
# with guaranteed teardown. Starts its own harness containerd with the vmm
# sandboxer only (hack/containerd.sh) in VMM_WORK (default _output/vmm-e2e,
# bridge mgbr6, 10.244.0.0/16: apart from the other harnesses), runs the
# generic e2e scripts of hack/e2e and the VM ones of hack/vmm/e2e against each
# runtime handler of VMM_HANDLERS (one daemon serves them all, each handler its
# hypervisor), then critest's offline set on each, stops everything and ends
# with exactly one summary line:
#   vmm-e2e: N passed, M failed, K skipped
#
# Every pod is a VM booting the guest image (make guest-image): about 5 s each
# under TCG here. magnetar-clh's pods run on the Cloud Hypervisor stand-in
# (hack/standins/cloud-hypervisor, make standins, $CLH_STANDIN: the documented
# command line and REST API, a QEMU TCG guest underneath), since the real
# cloud-hypervisor needs KVM; magnetar-stratovirt's on the StratoVirt stand-in
# (hack/standins/stratovirt, $STRATOVIRT_STANDIN: the guidebook's command line
# and qmp.md's QMP, a QEMU TCG guest underneath).
# Knobs: VMM_HANDLERS (default magnetar-vmm magnetar-clh magnetar-stratovirt), VMM_SUITES (the
# suites of magnetar-vmm, default below), VMM_OTHER_SUITES (those of every
# other handler: the lifecycle, exit codes, network, restart and VMM kill,
# since QEMU's run covers what is the same whatever the hypervisor),
# VMM_CRITEST=0 skips critest, VMM_CRITEST_HANDLERS (the handlers critest
# runs on: default all of VMM_HANDLERS), VMM_CRITEST_OFFLINE (those of them
# that run critest's offline set, 6 to 9 min each here, rather than the
# basic focus, about 3: default all), VMM_CRITEST_SET (one set for all),
# CYCLES (leak.sh, 10), VMM_POOL_SUITES (those run once more on
# magnetar-vmm with a warm pool of VMM_POOL_SIZE VMs, default 2: the daemon is
# reconfigured for them; empty skips it).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
export WORK=${VMM_WORK:-$OUT/vmm-e2e}
export BRIDGE=${VMM_BRIDGE:-mgbr6} SUBNET=${VMM_SUBNET:-10.244.0.0/16}
export HARNESS_SANDBOXERS=magnetar-vmm
VMM_HANDLERS=${VMM_HANDLERS:-magnetar-vmm magnetar-clh magnetar-stratovirt}
export CYCLES=${CYCLES:-10}
# generic (hack/e2e) and VM (hack/vmm/e2e) suites, in order; leak before
# restart so that it measures a daemon that was not restarted
VMM_SUITES=${VMM_SUITES:-"smoke exitcode tty multi net volume leak restart vmkill"}
VMM_OTHER_SUITES=${VMM_OTHER_SUITES:-"smoke exitcode net restart vmkill"}
VMM_CRITEST_HANDLERS=${VMM_CRITEST_HANDLERS:-all}
[ "$VMM_CRITEST_HANDLERS" = all ] && VMM_CRITEST_HANDLERS=$VMM_HANDLERS
VMM_CRITEST_OFFLINE=${VMM_CRITEST_OFFLINE-$VMM_CRITEST_HANDLERS}
# the suites run again on magnetar-vmm with its warm pool on (empty: none)
VMM_POOL_SUITES=${VMM_POOL_SUITES-"smoke exitcode tty multi net volume restart vmkill pool"}
VMM_POOL_SIZE=${VMM_POOL_SIZE:-2}

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  if [ "$fail" -gt 0 ]; then show_vm_consoles; fi
  stage_teardown
  stage_leftovers VM 'qemu|virtiofsd|cloud-hypervisor|stratovirt'
  stage_end vmm-e2e "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[ -x "$ROOT/bin/vmm-sandboxer" ] || { echo "FAIL vmm-e2e: bin/vmm-sandboxer missing: run make build"; fail=1; exit 1; }
[ -f "$GUEST_OUT/manifest.json" ] || { echo "FAIL vmm-e2e: no guest image in $GUEST_OUT: run make guest-image"; fail=1; exit 1; }
case " $VMM_HANDLERS " in *" magnetar-clh "*)
  [ -x "$CLH_STANDIN" ] || { echo "FAIL vmm-e2e: no Cloud Hypervisor stand-in at $CLH_STANDIN: run make standins"; fail=1; exit 1; } ;;
esac
t0=$SECONDS
stage_start
for h in $VMM_HANDLERS; do
  export RUNTIME_HANDLER=$h
  suites=$VMM_SUITES
  [ "$h" = magnetar-vmm ] || suites=$VMM_OTHER_SUITES
  for s in $suites; do
    run_suite "${s}[$h]" e2e "$WORK/logs/vmm-e2e-$s-$h.log" "$(suite_script vmm "$s")"
  done
  if [ "${VMM_CRITEST:-1}" = 1 ] && [[ " $VMM_CRITEST_HANDLERS " == *" $h "* ]]; then
    # what a pod in a VM cannot pass: hack/critest/expect/magnetar-vmm.txt
    set=basic
    [[ " $VMM_CRITEST_OFFLINE " == *" $h "* ]] && set=offline
    run_suite "critest[$h]" critest "$WORK/logs/vmm-critest-$h.log" \
      env CRITEST_SET="${VMM_CRITEST_SET:-$set}" RUNTIME_HANDLER="$h" "$ROOT/hack/critest.sh"
  fi
done
# the warm pool: magnetar-vmm's daemon again, configured with a pool of
# VMM_POOL_SIZE VMs (the suites' pods take them), then without
if [ -n "$VMM_POOL_SUITES" ] && [[ " $VMM_HANDLERS " == *" magnetar-vmm "* ]]; then
  export RUNTIME_HANDLER=magnetar-vmm
  if VMM_POOL_SIZE=$VMM_POOL_SIZE "$ROOT/hack/containerd.sh" sandboxer-reconfigure magnetar-vmm >"$WORK/logs/vmm-pool-on.log" 2>&1; then
    for s in $VMM_POOL_SUITES; do
      VMM_POOL_SIZE=$VMM_POOL_SIZE run_suite "${s}[magnetar-vmm,pool]" e2e "$WORK/logs/vmm-e2e-$s-pool.log" "$(suite_script vmm "$s")"
    done
  else
    fail=$((fail + 1)); summary+=("pool: magnetar-vmm's daemon did not start with a pool (see $WORK/logs/vmm-pool-on.log)")
  fi
  VMM_POOL_SIZE=0 "$ROOT/hack/containerd.sh" sandboxer-reconfigure magnetar-vmm >>"$WORK/logs/vmm-pool-on.log" 2>&1 || true
fi
log "vmm-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
