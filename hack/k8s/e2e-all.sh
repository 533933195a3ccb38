#!/usr/bin/env bash
# hack/k8s/e2e-all.sh: the Kubernetes end-to-end stage of `make test` (make
# k8s-e2e), with guaranteed teardown. Starts a one-node cluster (hack/k8s/
# node.sh: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a
# kubelet on the harness containerd with the sandboxers of bin/) in
# K8S_WORK (default _output/k8s-e2e, bridge mgbr9, 10.249.0.0/16), runs
# hack/k8s/e2e.sh against each handler of K8S_HANDLERS, then, once the
# kubelet has garbage-collected the deleted pods, its "removed" phase for
# each; stops everything and ends with exactly one summary line:
#   k8s-e2e: N passed, M failed, K skipped
#
# K8S_HANDLERS: default every handler of K8S_HANDLER_TABLE (hack/k8s/lib.sh)
# (make k8s-e2e: magnetar-runc magnetar-wasm; make k8s-vmm-e2e: magnetar-vmm)
# whose sandboxer is built (magnetar-vmm also needs the guest image).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
NODE=$ROOT/hack/k8s/node.sh

# the handlers: asked for, or every one of the table whose daemon can run
K8S_HANDLERS=${K8S_HANDLERS:-}
if [ -z "$K8S_HANDLERS" ]; then
  for line in "${K8S_HANDLER_TABLE[@]}"; do
    read -r h _ <<<"$line"
    bin=$(sandboxer_binary "$(daemon_handler "$h")") || continue
    [ -x "$ROOT/bin/$bin" ] || { log "$h: bin/$bin missing, not run"; continue; }
    if [ "$(daemon_handler "$h")" = magnetar-vmm ] && [ ! -f "$GUEST_OUT/manifest.json" ]; then
      log "$h: no guest image in $GUEST_OUT (make guest-image), not run"; continue
    fi
    K8S_HANDLERS+="${K8S_HANDLERS:+ }$h"
  done
fi
# only the daemons these handlers need
sandboxers=
for h in $K8S_HANDLERS; do
  d=$(daemon_handler "$h")
  [[ " $sandboxers " == *" $d "* ]] || sandboxers+="${sandboxers:+ }$d"
done
export HARNESS_SANDBOXERS=${sandboxers:-none}

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  if [ "$fail" -gt 0 ]; then show_vm_consoles; fi
  log "teardown"
  "$NODE" stop >/dev/null 2>&1 || { echo "FAIL teardown: hack/k8s/node.sh stop failed"; fail=$((fail + 1)); }
  stage_teardown
  local s
  for s in /var/lib/kubelet/device-plugins/kubelet.sock; do
    if [ -e "$s" ]; then echo "FAIL teardown: $s left"; fail=$((fail + 1)); fi
  done
  stage_end k8s-e2e "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

[ -n "$K8S_HANDLERS" ] || { echo "FAIL k8s-e2e: no handler to run (make build)"; fail=1; exit 1; }
for b in kubelet kube-apiserver etcd; do
  [ -x "$PREFIX/bin/$b" ] || { echo "FAIL k8s-e2e: $PREFIX/bin/$b missing: run make k8s-tools"; fail=1; exit 1; }
done
t0=$SECONDS
"$NODE" reset >/dev/null 2>&1 || log "reset of $WORK failed; starting anyway"
rc=0
"$NODE" start || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL k8s-e2e: the node did not come up (logs in $WORK/logs)"; fail=$((fail + 1)); exit 1; fi
log "node up in $((SECONDS - t0)) s; handlers: $K8S_HANDLERS"
if [[ " $HARNESS_SANDBOXERS " == *" magnetar-wasm "* ]]; then "$ROOT/hack/wasm/images.sh" import; fi

# run PHASE HANDLER
run() {
  local lf=$WORK/logs/k8s-e2e-$1-$2.log rc=0 ts=$SECONDS
  log "k8s $1 on $2"
  RUNTIME_HANDLER=$2 "$ROOT/hack/k8s/e2e.sh" "$1" 2>&1 | tee "$lf" || rc=$?
  add_counts "$lf" e2e "$1[$2]" "$rc"
  log "k8s $1 on $2 took $((SECONDS - ts)) s"
  if [ "$1" = pods ]; then
    local line
    line=$(grep -E "^e2e: [0-9]+ passed" "$lf" | tail -1 || true)
    if [ -n "$line" ]; then conformance_record k8s-e2e "$2" "${line#e2e: }"; fi
  fi
}
for h in $K8S_HANDLERS; do run pods "$h"; done
for h in $K8S_HANDLERS; do run removed "$h"; done
log "k8s-e2e took $((SECONDS - t0)) s (logs in $WORK/logs)"
