#!/usr/bin/env bash
# hack/wasm/e2e/restart.sh: kill -9 of the wasm daemon with pods present,
# then a restart. What survives: the pods (READY, they run new containers),
# exited containers with their exit codes, logs. What does not: the modules
# that were running (they ran inside the daemon): each is reported EXITED
# with 255 (the reason is in the daemon's log), and is removed cleanly.
source "$(dirname "$0")/lib.sh"
e2e_init
CD=$ROOT/hack/containerd.sh

POD=$(run_pod wrestart)
req "pod ready" is_pod_state "$POD" SANDBOX_READY
DONE=$(start_ctr "$POD" wrestart done "$C_IMAGE" '["/hello.wasm","exit","5"]')
step "a container exits with 5" wait_exited "$DONE"
RUN=$(start_ctr "$POD" wrestart run "$GO_IMAGE" '["/guest.wasm","idle"]')
RUNC=$(start_ctr "$POD" wrestart runc "$C_IMAGE" '["/hello.wasm","idle"]')
running() { for i in "$RUN" "$RUNC"; do has_output "$i" '^ready$' && is_ctr_state "$i" CONTAINER_RUNNING || return 1; done; }
req "two modules running" wait_for 30 running

kill9() {
  local old
  old=$(wasm_pid)
  "$CD" sandboxer-kill "$WASM_DAEMON" >/dev/null 2>&1
  ! pid_alive "$old" || fail "daemon $old still alive"
  "$CD" sandboxer-start "$WASM_DAEMON" >/dev/null 2>&1
  [ "$(wasm_pid)" != "$old" ] && daemon_alive
}
req "kill -9 of the daemon, then a restart" kill9

lost() {
  local i
  for i in "$RUN" "$RUNC"; do
    wait_exited "$i" 30
    expect_eq "exit code of a lost module" "$(exit_code "$i")" 255
    grep -q "wasm container lost.*container_id=$i" "$WASM_LOG" || fail "no reason logged for $i"
  done
}
step "the running modules are reported EXITED 255, the reason in the daemon's log" lost
step "the exited container keeps its exit code" expect_eq "exit code" "$(exit_code "$DONE")" 5
step "the pod is still READY" is_pod_state "$POD" SANDBOX_READY
newctr() {
  local id
  id=$(start_ctr "$POD" wrestart after "$GO_IMAGE" "")
  wait_exited "$id"
  expect_eq "stdout" "$(out "$id")" "hello from wasm"
  expect_eq "exit code" "$(exit_code "$id")" 0
}
step "the pod runs a new container after the restart" newctr
newpod() {
  local p id
  p=$(run_pod wrestart2)
  id=$(start_ctr "$p" wrestart2 hello "$C_IMAGE" "")
  wait_exited "$id"
  expect_eq "stdout" "$(out "$id")" "hello from C"
}
step "a new pod runs after the restart" newpod
cleanup() {
  local i
  crictl stopp "$POD" >/dev/null
  crictl rmp "$POD" >/dev/null
  for i in "$RUN" "$RUNC" "$DONE"; do no_mounts_of "$i"; done
  [ -z "$(ls "$WORK/lib/$WASM_DAEMON/tasks" 2>/dev/null | grep -E "$RUN|$RUNC|$DONE" || true)" ] || fail "task records left"
}
step "stopp + rmp of the restarted pod: no mount or record left" cleanup
