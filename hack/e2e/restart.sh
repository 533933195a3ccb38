#!/usr/bin/env bash
# hack/e2e/restart.sh: pods outlive a crash of the daemons that manage them.
# Two pods with running containers (one of them logs a tick every 0.2 s), then
#   phase "sandboxer": kill -9 the handler's sandboxer daemon only and start
#                      it again with the same flags (skipped for the runc
#                      shim handler, which has no sandboxer daemon)
#   phase "containerd": kill -9 containerd and start it again (the sandboxers
#                      and shims keep running)
# After each phase: both pods still SANDBOX_READY, containers RUNNING, exec
# works, the ticker's log keeps growing, a new container starts in an old pod,
# a new pod runs. At the end stop/rm of everything works and leaves no pod.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/restart.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

CD=$ROOT/hack/containerd.sh
SB=$(sandboxer_binary "$DAEMON_HANDLER" || true)
TICK='["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.2; done"]'
SLEEP='["sleep", "3600"]'

sb_pid() { cat "$WORK/run/$DAEMON_HANDLER.pid"; }
kill_sandboxer() {
  local pid
  pid=$(sb_pid)
  "$CD" sandboxer-kill "$DAEMON_HANDLER" 2>&1
  ! pid_alive "$pid" || fail "sandboxer $pid still alive after SIGKILL"
}
start_sandboxer() { "$CD" sandboxer-start "$DAEMON_HANDLER" 2>&1; }
kill_containerd() {
  local pid
  pid=$(cat "$WORK/run/containerd.pid")
  "$CD" containerd-kill 2>&1
  ! pid_alive "$pid" || fail "containerd $pid still alive after SIGKILL"
}
start_containerd() { "$CD" containerd-start 2>&1; }

pods_ready() {
  local p
  for p in "$P1" "$P2"; do expect_eq "state of pod $p" "$(pod_state "$p")" SANDBOX_READY; done
}
ctrs_running() {
  local c
  for c in "$C1" "$C2"; do expect_eq "state of container $c" "$(ctr_state "$c")" CONTAINER_RUNNING; done
}
exec_works() {
  expect_eq "exec in pod 1" "$(crictl exec "$C1" echo alive-1)" alive-1
  expect_eq "exec -s in pod 2" "$(exec_out "$C2" echo alive-2 | tr -d '\n')" alive-2
}
tick_count() { crictl logs "$C2" 2>/dev/null | grep -c '^tick-' || true; }
ticks_grow() {
  local n0
  n0=$(tick_count)
  wait_for 10 sh -c "[ \$('$PREFIX/bin/crictl' -c '$CRICTL_CONFIG' logs '$C2' 2>/dev/null | grep -c '^tick-') -ge $((n0 + 3)) ]" ||
    fail "ticker log stuck at $n0 lines"
}
new_ctr() { # new_ctr PHASE
  local id
  id=$(start_ctr "$P1" r1 "new-$1" "$BUSYBOX_IMAGE" '["sh", "-c", "echo new-container; exec sleep 3600"]')
  wait_ctr_state "$id" CONTAINER_RUNNING 10
  expect_eq "exec in the new container" "$(exec_out "$id" echo ok | tr -d '\n')" ok
  echo "$id"
}
new_pod() {
  local p c
  p=$(run_pod "r-new-$1")
  c=$(start_ctr "$p" "r-new-$1" c "$BUSYBOX_IMAGE" "$SLEEP")
  wait_ctr_state "$c" CONTAINER_RUNNING 10
  crictl rmp -f "$p" >/dev/null
}
# containerd's gRPC connection to a restarted sandboxer recovers after its
# reconnect backoff (about a second): until then CRI calls fail Unavailable.
# A pod that had turned NOTREADY never becomes READY again, so polling is fine.
pods_ready_again() { wait_for 15 pods_ready; }
after() { # after PHASE: the checks
  step "$1: pods SANDBOX_READY (again within 15 s)" pods_ready_again
  step "$1: containers still RUNNING" ctrs_running
  step "$1: exec works" exec_works
  step "$1: ticker log keeps growing" ticks_grow
  step "$1: new container in an old pod" new_ctr "$1"
  step "$1: new pod runs" new_pod "$1"
  step "$1: pods still SANDBOX_READY after all that" pods_ready
}
stop_all() {
  local c
  for c in $(crictl ps -q --pod "$P1") $(crictl ps -q --pod "$P2"); do crictl stop -t 2 "$c" >/dev/null; done
  for c in $(crictl ps -a -q --pod "$P1") $(crictl ps -a -q --pod "$P2"); do crictl rm "$c" >/dev/null; done
  crictl stopp "$P1" "$P2" >/dev/null
  crictl rmp "$P1" "$P2" >/dev/null
  expect_eq "pods of this test left" "$(suite_pods)" ""
}

req  "runp r1" run_pod r1; P1=$LAST
req  "runp r2" run_pod r2; P2=$LAST
req  "start sleeper in r1" start_ctr "$P1" r1 sleeper "$BUSYBOX_IMAGE" "$SLEEP"; C1=$LAST
req  "start ticker in r2" start_ctr "$P2" r2 ticker "$BUSYBOX_IMAGE" "$TICK"; C2=$LAST
req  "both RUNNING" ctrs_running
req  "ticker logs" ticks_grow

if [ -n "$SB" ]; then
  req  "sandboxer: kill -9 $RUNTIME_HANDLER" kill_sandboxer
  req  "sandboxer: start $RUNTIME_HANDLER again" start_sandboxer
  after sandboxer
else
  echo "     restart: handler $RUNTIME_HANDLER has no sandboxer daemon: phase 'sandboxer' skipped"
fi

req  "containerd: kill -9" kill_containerd
req  "containerd: start again" start_containerd
after containerd
if [ -n "$SB" ]; then step "containerd: sandboxer still the same process" pid_alive "$(sb_pid)"; fi

step "stop and remove everything" stop_all
