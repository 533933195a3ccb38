#!/usr/bin/env bash
# hack/e2e/exitcode.sh: how containers end, as `crictl inspect` reports it.
#   seven    sh -c 'exit 7'          -> CONTAINER_EXITED, exitCode 7, reason Error
#   zero     true                    -> CONTAINER_EXITED, exitCode 0, reason Completed
#   killed   ignores SIGTERM; crictl stop -t 0 (SIGKILL at once) -> exitCode 137
#   termed   traps SIGTERM, exits 143; crictl stop -t 10 -> exitCode 143 at once
# (the signals come from the host, so they work whether or not the process
# is PID 1 of its PID namespace)
#   late     output just before exit -> the log has it (stdio flushed on exit)
# plus: exec into an exited container fails; finishedAt >= startedAt; the
# pod stays READY while its containers exit.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/exitcode.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

# ended ID CODE REASON: wait for EXITED, then check exit code and reason
ended() {
  wait_ctr_state "$1" CONTAINER_EXITED 10
  expect_eq "exitCode" "$(ctr_field "$1" .status.exitCode)" "$2"
  expect_eq "reason" "$(ctr_field "$1" .status.reason)" "$3"
}
times_ok() {
  local js s f
  js=$(crictl inspect -o json "$SEVEN")
  s=$(jq -r '.status.startedAt' <<<"$js"); f=$(jq -r '.status.finishedAt' <<<"$js")
  [ "$(date -d "$s" +%s%N)" -gt 0 ] || fail "startedAt $s"
  [ "$(date -d "$f" +%s%N)" -ge "$(date -d "$s" +%s%N)" ] || fail "finishedAt $f before startedAt $s"
}
exec_exited() {
  if crictl exec -s "$SEVEN" true >/dev/null 2>&1; then fail "exec into an exited container succeeded"; fi
}
stop_termed() {
  local t0 ms
  wait_ctr_state "$TERMED" CONTAINER_RUNNING 10
  t0=$(now_ms)
  crictl stop -t 10 "$TERMED" >/dev/null
  ms=$(( $(now_ms) - t0 ))
  [ "$ms" -lt 5000 ] || fail "stop took $ms ms: SIGTERM not delivered?"
  expect_match "log" "$(crictl logs "$TERMED" 2>&1)" "^got-term$"
}
stop_killed() {
  wait_ctr_state "$KILLED" CONTAINER_RUNNING 10
  crictl stop -t 0 "$KILLED" >/dev/null
}
late_log() {
  wait_ctr_state "$LATE" CONTAINER_EXITED 10
  local out
  out=$(crictl logs "$LATE" 2>&1)
  expect_match "last line" "$out" "^line-500$"
  expect_eq "line count" "$(grep -c '^line-' <<<"$out")" 500
}

req  "runp" run_pod exitcode; POD=$LAST
req  "start seven (exit 7)" start_ctr "$POD" exitcode seven "$BUSYBOX_IMAGE" '["sh", "-c", "exit 7"]'; SEVEN=$LAST
req  "start zero (true)" start_ctr "$POD" exitcode zero "$BUSYBOX_IMAGE" '["true"]'; ZERO=$LAST
req  "start killed (ignores SIGTERM)" start_ctr "$POD" exitcode killed "$BUSYBOX_IMAGE" \
  '["sh", "-c", "trap \"\" TERM; exec sleep 3600"]'
KILLED=$LAST
req  "start termed (traps SIGTERM)" start_ctr "$POD" exitcode termed "$BUSYBOX_IMAGE" \
  '["sh", "-c", "trap \"echo got-term; exit 143\" TERM; sleep 3600 & wait"]'
TERMED=$LAST
req  "start late (500 lines, then exit)" start_ctr "$POD" exitcode late "$BUSYBOX_IMAGE" \
  '["sh", "-c", "i=1; while [ $i -le 500 ]; do echo line-$i; i=$((i+1)); done"]'
LATE=$LAST
step "exit 7: EXITED 7 Error" ended "$SEVEN" 7 Error
step "true: EXITED 0 Completed" ended "$ZERO" 0 Completed
step "crictl stop -t 0: SIGKILL" stop_killed
step "killed: EXITED 137 Error" ended "$KILLED" 137 Error
step "crictl stop -t 10: SIGTERM, handled at once" stop_termed
step "stopped: EXITED 143 Error" ended "$TERMED" 143 Error
step "log complete after a fast exit" late_log
step "finishedAt >= startedAt" times_ok
step "exec into an exited container fails" exec_exited
step "pod still READY" is_pod_state "$POD" SANDBOX_READY
step "rm exited containers" crictl rm "$SEVEN" "$ZERO" "$KILLED" "$TERMED" "$LATE"
step "stopp" crictl stopp "$POD"
step "rmp" crictl rmp "$POD"
