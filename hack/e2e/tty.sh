#!/usr/bin/env bash
# hack/e2e/tty.sh: containers with tty=true and stdin=true.
#   term   runs `sleep` after writing to its TTY: the CRI log shows the output
#          written through the TTY (stdout is a terminal, /dev/pts/N);
#          `crictl exec -it` gets a TTY (and stdin: a typed command runs and
#          its exit code comes back); `crictl exec -s` gets none
#   shell  runs `sh` as its main process: `crictl attach -it` types a command
#          into it over the container's stdin; the container exits with the
#          code typed (9) and its log holds the command's output
# crictl refuses -t without -i and wants a terminal on its side, so it runs
# under util-linux `script` with the keystrokes on script's stdin.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/tty.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init
command -v script >/dev/null || { echo "FAIL tty: util-linux 'script' missing (apt-get install bsdutils)"; exit 1; }

TTY='"tty": true, "stdin": true'
C="$PREFIX/bin/crictl -c $CRICTL_CONFIG"

# in_pty CMD INPUT: run CMD (a shell string) in a pseudo-terminal, typing INPUT
in_pty() { timeout -k 5 60 script -qec "$1" /dev/null <<<"$2"; }

# what tty(1) prints on the container's terminal: its /dev/pts name, except
# in a gVisor sandbox, where the terminal is the host's pty imported into the
# sentry as a host file: a terminal (isatty) without a /dev/pts name
PTS_RE="/dev/pts/[0-9]+"
if [ "$RUNTIME_HANDLER" = magnetar-gvisor ]; then PTS_RE="not a tty"; fi
tty_logs() {
  wait_for 10 sh -c "'$PREFIX/bin/crictl' -c '$CRICTL_CONFIG' logs '$TERM_ID' 2>&1 | grep -Eq '^$PTS_RE|/dev/pts/'"
  local out
  out=$(crictl logs "$TERM_ID" 2>&1)
  expect_match "log" "$out" "^tty-hello"
  expect_match "log" "$out" "^stdout-is-a-tty"
  expect_match "log" "$out" "^$PTS_RE"
}
exec_it_tty() {
  local out
  out=$(in_pty "$C exec -it $TERM_ID sh -c 'tty; [ -t 0 ] && echo stdin-is-a-tty'" "" 2>&1)
  expect_match "exec -it: tty" "$out" "$PTS_RE"
  expect_match "exec -it: stdin" "$out" "stdin-is-a-tty"
}
exec_it_stdin() {
  local out rc=0
  out=$(in_pty "$C exec -it $TERM_ID sh" 'echo $((6*7)); exit 4' 2>&1) || rc=$?
  expect_match "exec -it: typed command output" "$out" "^42"
  expect_match "exec -it: exit code" "$out" "exit code 4"
  [ "$rc" -ne 0 ] || fail "crictl exec -it of 'exit 4' returned 0"
}
exec_s_notty() {
  expect_eq "exec -s tty: exit code" "$(exec_sync_code "$TERM_ID" tty)" 1
  expect_match "exec -s tty" "$(exec_out "$TERM_ID" sh -c 'tty; echo rc=$?')" "not a tty"
}
attach_shell() {
  local out
  out=$(in_pty "$C attach -i -t $SHELL_ID" 'echo $((6*7)); exit 9' 2>&1)
  expect_match "attach output" "$out" "^42"
  wait_ctr_state "$SHELL_ID" CONTAINER_EXITED 10
  expect_eq "shell exit code" "$(ctr_field "$SHELL_ID" .status.exitCode)" 9
}
shell_log() { expect_match "shell log" "$(crictl logs "$SHELL_ID" 2>&1)" "^42"; }

req  "runp" run_pod tty; POD=$LAST
req  "start term (tty, stdin)" start_ctr "$POD" tty term "$BUSYBOX_IMAGE" \
  '["sh", "-c", "echo tty-hello; if [ -t 1 ]; then echo stdout-is-a-tty; fi; tty; exec sleep 3600"]' "$TTY"
TERM_ID=$LAST
req  "term RUNNING" wait_ctr_state "$TERM_ID" CONTAINER_RUNNING 10
step "logs: output written through the TTY" tty_logs
step "exec -it: a TTY" exec_it_tty
step "exec -it: stdin through the TTY, exit code 4" exec_it_stdin
step "exec -s: no TTY" exec_s_notty
req  "start shell (tty, stdin, sh)" start_ctr "$POD" tty shell "$BUSYBOX_IMAGE" '["sh"]' "$TTY"
SHELL_ID=$LAST
req  "shell RUNNING" wait_ctr_state "$SHELL_ID" CONTAINER_RUNNING 10
step "attach -it: typed 'exit 9' ends the container with 9" attach_shell
step "shell log holds the typed command's output" shell_log
step "stop term" crictl stop -t 1 "$TERM_ID"
step "rmp" crictl rmp -f "$POD"
