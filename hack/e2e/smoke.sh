#!/usr/bin/env bash
# hack/e2e/smoke.sh: the life of one pod with one busybox container through
# CRI: runp -> inspectp (READY, pod IP) -> create -> start -> exec (streaming
# and ExecSync, exit codes) -> logs (stdout and stderr apart) -> stats -> stop
# (the container ignores SIGTERM: SIGKILL after the 2 s grace period, exit
# code 137) -> rm -> stopp -> rmp. On the way, the container must not see
# the directories of its sandboxer (state and run dirs) nor containerd's:
# a file of a random name is put in each, and in every directory of the pod
# there, and a search of the container's whole file system finds none.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/smoke.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

check_pod_ready() { expect_eq "pod state" "$(pod_state "$POD")" SANDBOX_READY; }
check_pod_ip() {
  local ip prefix
  ip=$(crictl inspectp -o go-template --template '{{.status.network.ip}}' "$POD")
  prefix=$(cut -d. -f1-2 <<<"$SUBNET")
  expect_match "pod IP" "$ip" "^${prefix//./\\.}\.[0-9]+\.[0-9]+$"
  echo "$ip"
}
check_handler() { expect_eq "runtime handler" "$(crictl inspectp -o go-template --template '{{.status.runtimeHandler}}' "$POD")" "$RUNTIME_HANDLER"; }
create_ctr() {
  local f
  f=$(ctr_json smoke bb "$BUSYBOX_IMAGE" '["/bin/sh", "-c", "trap \"\" TERM; echo hello-stdout; echo hello-stderr >&2; exec sleep 3600"]')
  crictl create "$POD" "$f" "$T/smoke.pod.json"
}
check_created() { expect_eq "state" "$(ctr_state "$CID")" CONTAINER_CREATED; }
check_running() { wait_ctr_state "$CID" CONTAINER_RUNNING 10; }
exec_stream() { expect_eq "exec output" "$(crictl exec "$CID" echo exec-ok)" exec-ok; }
exec_stream_code() {
  local out
  if out=$(crictl exec "$CID" sh -c 'echo before-exit; exit 5' 2>&1); then fail "exec of 'exit 5' succeeded: $out"; fi
  expect_match "exec output" "$out" "before-exit"
  expect_match "exec exit code" "$out" "exit code 5"
}
exec_sync() { expect_match "ExecSync output" "$(exec_out "$CID" sh -c 'echo sync-out; echo sync-err >&2')" "sync-out"; }
exec_sync_code3() { expect_eq "ExecSync exit code" "$(exec_sync_code "$CID" sh -c 'exit 3')" 3; }
exec_sync_code0() { expect_eq "ExecSync exit code" "$(exec_sync_code "$CID" true)" 0; }
exec_net() { expect_match "eth0 in the container" "$(exec_out "$CID" ip -4 addr show eth0)" "inet ${POD_IP//./\\.}/"; }
exec_env() { expect_match "PATH in exec" "$(exec_out "$CID" sh -c 'echo $PATH')" "/usr/bin"; }
# no_canary: the container cannot reach what plant_canaries marked: none of
# the directories by its path, no canary anywhere in its file system
no_canary() {
  local d found
  [ -n "$CANARY_DIRS" ] || fail "no canary was planted"
  for d in $CANARY_DIRS; do
    if exec_out "$CID" test -e "$d" >/dev/null 2>&1; then fail "the container sees $d"; fi
  done
  found=$(exec_out "$CID" find / \( -path /proc -o -path /sys \) -prune -o -name "$CANARY" -print 2>&1)
  expect_eq "canaries the container finds" "$found" ""
}
logs_stdout() {
  local out
  out=$(crictl logs "$CID" 2>/dev/null)
  expect_match "stdout log" "$out" "^hello-stdout$"
  expect_nomatch "stdout log" "$out" "hello-stderr"
}
logs_stderr() {
  local out
  out=$(crictl logs "$CID" 2>&1 >/dev/null)
  expect_match "stderr log" "$out" "^hello-stderr$"
  expect_nomatch "stderr log" "$out" "hello-stdout"
}
log_file() {
  local f
  f=$(ctr_field "$CID" .status.logPath)
  expect_match "CRI log file" "$(cat "$f")" " stdout F hello-stdout$"
}
stats() {
  local js ws
  js=$(crictl stats -o json --id "$CID")
  expect_eq "stats container id" "$(jq -r '.stats[0].attributes.id' <<<"$js")" "$CID"
  ws=$(jq -r '.stats[0].memory.workingSetBytes.value // 0' <<<"$js")
  [ "$ws" -gt 0 ] || fail "memory working set is $ws"
}
pod_stats() { expect_eq "pod stats id" "$(crictl statsp -o json --id "$POD" | jq -r '.stats[0].attributes.id')" "$POD"; }
stop_ctr() { # the container ignores SIGTERM: stop must wait 2 s, then SIGKILL
  local t0 ms
  t0=$(now_ms)
  crictl stop -t 2 "$CID" >/dev/null
  ms=$(( $(now_ms) - t0 ))
  [ "$ms" -ge 1800 ] || fail "stop returned after $ms ms: the 2 s grace period was not honoured"
}
check_exited() {
  expect_eq "state" "$(ctr_state "$CID")" CONTAINER_EXITED
  expect_eq "exit code (SIGKILL after the grace period)" "$(ctr_field "$CID" .status.exitCode)" 137
}
rm_ctr() { crictl rm "$CID" >/dev/null; expect_eq "containers left" "$(crictl ps -a -q --pod "$POD")" ""; }
check_notready() { expect_eq "pod state" "$(pod_state "$POD")" SANDBOX_NOTREADY; }
check_gone() { expect_eq "pods left" "$(crictl pods -q --id "$POD")" ""; }

req  "runp" run_pod smoke; POD=$LAST
step "inspectp: SANDBOX_READY" check_pod_ready
step "inspectp: pod IP in $SUBNET" check_pod_ip; POD_IP=$LAST
step "inspectp: runtime handler" check_handler
req  "create container" create_ctr; CID=$LAST
step "container CREATED" check_created
req  "start container" crictl start "$CID"
req  "container RUNNING" check_running
step "exec (streaming) output" exec_stream
step "exec (streaming) exit code 5" exec_stream_code
step "exec -s (ExecSync) output" exec_sync
step "exec -s exit code 3" exec_sync_code3
step "exec -s exit code 0" exec_sync_code0
step "exec sees the pod network" exec_net
step "exec gets the image env" exec_env
plant_canaries "$POD" "$CID"
step "the container sees no directory of its sandboxer or containerd" no_canary
remove_canaries
step "logs: stdout only" logs_stdout
step "logs: stderr only" logs_stderr
step "CRI log file format" log_file
step "stats: container" stats
step "statsp: pod" pod_stats
if [ "$RUNTIME_HANDLER" = runc ]; then
  skip "the daemon's Go profiles on its debug socket" "containerd's runc shim has none"
elif ! debug_configured; then
  skip "the daemon's Go profiles on its debug socket" "its configuration has none (off by default: the installed package's)"
else
  step "the daemon's Go profiles on its debug socket (0600)" debug_profiles
fi
step "stop container (-t 2)" stop_ctr
step "container EXITED 137" check_exited
step "rm container" rm_ctr
step "stopp" crictl stopp "$POD"
step "pod NOTREADY" check_notready
step "rmp" crictl rmp "$POD"
step "pod gone" check_gone
