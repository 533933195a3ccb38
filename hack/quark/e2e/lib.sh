#!/usr/bin/env bash
# hack/quark/e2e/lib.sh: helpers of the Quark e2e scripts, over hack/e2e/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/lib.sh"

# the quark sandboxer's state directory (its --dir in the harness)
SB_DIR=$WORK/lib/magnetar-quark
# pod_run_dir POD: the pod's run directory (task socket, pid file, the
# stand-in's log): the one whose quark was run for this pod
pod_run_dir() {
  local d
  for d in "$(run_dir_of quark)"/*/; do
    if grep -q -- "--id $1 " "$d/quark-standin.log" 2>/dev/null; then echo "${d%/}"; return 0; fi
  done
  fail "no run directory of pod $1 below $(run_dir_of quark)"
}
# pod_bundle POD: Quark's sandbox bundle of the pod, the root of its sandbox
pod_bundle() { echo "$SB_DIR/sandboxes/$1/sandbox"; }
# sandbox_pid POD: the pid of the pod's sandbox process (its pid file)
sandbox_pid() {
  local pid
  pid=$(cat "$(pod_run_dir "$1")/quark.pid")
  pid_alive "$pid" || fail "sandbox process $pid of pod $1 is not alive"
  echo "$pid"
}
