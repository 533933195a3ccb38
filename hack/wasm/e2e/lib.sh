#!/usr/bin/env bash
# hack/wasm/e2e/lib.sh: helpers of the wasm e2e suites, on top of
# hack/e2e/lib.sh (step/req/run_pod/start_ctr/wait_for, summary line).
# RUNTIME_HANDLER defaults to magnetar-wasm; magnetar-wasm-wazero is served by
# the same daemon, whose log is logs/magnetar-wasm.log.
RUNTIME_HANDLER=${RUNTIME_HANDLER:-magnetar-wasm}
SUITE=${SUITE:-wasm-$(basename "$0" .sh)}
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/lib.sh"

GO_IMAGE=${GO_IMAGE:-localhost/magnetar/wasm-go:v1}
C_IMAGE=${C_IMAGE:-localhost/magnetar/wasm-c:v1}
BAD_IMAGE=${BAD_IMAGE:-localhost/magnetar/wasm-bad:v1}
WASM_DAEMON=magnetar-wasm
WASM_LOG=$WORK/logs/$WASM_DAEMON.log

# both handlers log to the one daemon's log
_e2e_logs() {
  echo "$WASM_LOG"
  echo "$WORK/logs/containerd.log"
}

# create_ctr POD_ID POD_NAME NAME IMAGE CMD_JSON [EXTRA]: create only, prints the id
create_ctr() {
  local pod=$1 podname=$2 f
  shift 2
  f=$(ctr_json "$podname" "$@")
  crictl create "$pod" "$f" "$T/$podname.pod.json"
}
exit_code() { ctr_field "$1" .status.exitCode; }
# out ID / err ID: the container's stdout / stderr lines (crictl logs splits them)
out() { crictl logs "$1" 2>/dev/null; }
err() { crictl logs "$1" 2>&1 >/dev/null; }
wait_exited() { wait_ctr_state "$1" CONTAINER_EXITED "${2:-30}"; }
# logged ID ERE: the container's output (stdout and stderr) matches
has_output() { crictl logs "$1" 2>&1 | grep -Eq -- "$2"; }
# our_mounts ID: mounts below WORK naming the container id
our_mounts() { awk -v w="$WORK/" -v id="$1" 'index($2, w) == 1 && index($2, id) > 0 {print $2}' /proc/mounts; }
no_mounts_of() { local m; m=$(our_mounts "$1"); [ -z "$m" ] || fail "mounts left for $1: $m"; }
# wasm_pid: the daemon's pid
wasm_pid() { cat "$WORK/run/$WASM_DAEMON.pid"; }
daemon_alive() { pid_alive "$(wasm_pid)" || fail "the wasm daemon is gone"; }
# show: print the last step's stdout (its measurements), indented
show() { if [ -n "$LAST" ]; then sed 's/^/     | /' <<<"$LAST"; fi; }
# log_ns ID MESSAGE: the time (ns since the epoch) of the last daemon log line
# MESSAGE for container ID
log_ns() {
  local t
  t=$(grep "msg=\"$2\"" "$WASM_LOG" | grep "container_id=$1" | tail -1 | sed -n 's/^time="\([^"]*\)".*/\1/p')
  [ -n "$t" ] || fail "no \"$2\" in the daemon log for $1"
  date -d "$t" +%s%N
}
