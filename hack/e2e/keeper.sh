#!/usr/bin/env bash
# hack/e2e/keeper.sh: the task keeper (the process that owns the sockets
# containerd dials and relays them to the daemon) dies while the daemon runs:
# the daemon starts a new one within a few seconds (shared/daemon
# superviseKeeper), new pods run again, and the pod that was running when it
# died can still be removed cleanly. What containerd does with that pod's
# container is its own business: it treats the closed task connection as a dead
# shim and reports the container exited (255); removing the pod must still end
# the container's process.
# Only for Magnetar handlers (the runc shim has no keeper).
#
#   [RUNTIME_HANDLER=magnetar-runc] [WORK=...] hack/e2e/keeper.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

SB=$(sandboxer_binary "$DAEMON_HANDLER" || true)
if [ -z "$SB" ]; then
  echo "     keeper: handler $RUNTIME_HANDLER has no sandboxer daemon: nothing to test"
  exit 0
fi
SLEEP='["sleep", "3600"]'
NAME=${RUNTIME_HANDLER#magnetar-}
KPID_FILE=$WORK/run/$NAME-keeper.pid
DPID=$(cat "$WORK/run/$DAEMON_HANDLER.pid")

keeper_pid() { cat "$KPID_FILE"; }
keeper_alive() { pid_alive "$(keeper_pid)"; }
kill_keeper() {
  OLD=$(keeper_pid)
  pid_alive "$OLD" || fail "keeper $OLD not running before the test"
  kill -KILL "$OLD"
  local i
  for i in $(seq 1 50); do pid_alive "$OLD" || break; sleep 0.1; done
  ! pid_alive "$OLD" || fail "keeper $OLD still alive after SIGKILL"
  echo "$OLD"
}
new_keeper() {
  local old=$1
  wait_for 10 sh -c "[ \"\$(cat '$KPID_FILE')\" != '$old' ]" || fail "no new keeper within 10 s (pid file still names $old)"
  keeper_alive || fail "the new keeper $(keeper_pid) is not running"
}
daemon_same() { pid_alive "$DPID" || fail "the daemon $DPID died"; }
new_pod() {
  local p c
  p=$(wait_for_pod)
  c=$(start_ctr "$p" keeper-new c "$BUSYBOX_IMAGE" "$SLEEP")
  wait_ctr_state "$c" CONTAINER_RUNNING 10
  expect_eq "exec in the new pod" "$(exec_out "$c" echo ok | tr -d '\n')" ok
  crictl rmp -f "$p" >/dev/null
}
# containerd's gRPC connection to the Sandbox API reconnects with a backoff
# after the keeper's socket went away: retry runp for a while
wait_for_pod() {
  local i p
  for i in $(seq 1 30); do
    if p=$(run_pod keeper-new 2>/dev/null); then echo "$p"; return 0; fi
    sleep 0.5
  done
  run_pod keeper-new
}
# containerd handles the dead task connection's exit with retries (about a
# second): until then it says the old container is "still running"
old_pod_removed() {
  local i
  for i in $(seq 1 20); do
    if crictl rmp -f "$P1" >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  expect_eq "pods of this test left" "$(suite_pods)" ""
  case "$RUNTIME_HANDLER" in
  magnetar-vmm | magnetar-quark)
    # the pid is the guest's (the VM's, the Quark sandbox's), no host
    # process: the pod's own suites check that its host processes end
    return 0 ;;
  esac
  for i in $(seq 1 50); do pid_alive "$CPID" || break; sleep 0.1; done
  ! pid_alive "$CPID" || fail "the old container's process $CPID outlived its pod"
}

req  "runp k1" run_pod k1; P1=$LAST
req  "start sleeper in k1" start_ctr "$P1" k1 sleeper "$BUSYBOX_IMAGE" "$SLEEP"; C1=$LAST
req  "sleeper RUNNING" wait_ctr_state "$C1" CONTAINER_RUNNING 10
req  "sleeper pid" ctr_field "$C1" .info.pid; CPID=$LAST
req  "kill -9 the keeper" kill_keeper; OLDK=$LAST
step "the daemon starts a new keeper within 10 s" new_keeper "$OLDK"
step "the daemon is the same process" daemon_same
step "a new pod runs, exec works" new_pod
step "the old pod is removed, its container's process ends" old_pod_removed
