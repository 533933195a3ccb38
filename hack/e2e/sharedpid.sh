#!/usr/bin/env bash
# hack/e2e/sharedpid.sh: PID namespace modes of a pod.
#   pod "shared"   namespace_options.pid = POD (CRI enum value 0): container b
#                  sees container a's process (ps) and can signal it
#   pod "private"  namespace_options.pid = CONTAINER (1): each container has
#                  its own PID namespace and does not see the other
# (CRI NamespaceMode: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3; kubelet's
# default for pid is CONTAINER, crictl's JSON default 0 means POD.)
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/sharedpid.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

# a's process is recognisable by its argument
A_CMD='["sh", "-c", "exec sleep 3601"]'
B_CMD='["sh", "-c", "exec sleep 3602"]'

ps_of() { exec_out "$1" ps -o pid,args; }
running2() { wait_ctr_state "$1" CONTAINER_RUNNING 10; wait_ctr_state "$2" CONTAINER_RUNNING 10; }
sees_other() {
  local out
  out=$(ps_of "$SB")
  expect_match "ps in b (shared pid ns)" "$out" "sleep 3601"
  expect_match "ps in b (shared pid ns)" "$out" "sleep 3602"
}
a_sees_b() { expect_match "ps in a (shared pid ns)" "$(ps_of "$SA")" "sleep 3602"; }
kill_other() {
  local pid
  pid=$(ps_of "$SB" | awk '/sleep 3601/ && !/awk/ {print $1; exit}')
  [ -n "$pid" ] || fail "no 'sleep 3601' in b"
  exec_out "$SB" kill -TERM "$pid" >/dev/null
  wait_ctr_state "$SA" CONTAINER_EXITED 10
  expect_eq "a's exit code after b's SIGTERM" "$(ctr_field "$SA" .status.exitCode)" 143
}
# PID 1 of the shared namespace: the runc shim's pause, Magnetar's small pod
# init (magnetar-podinit, not a copy of the sandboxer), in a VM the guest
# agent as the pod init (never the agent itself: PID 1 of the guest), in a
# gVisor sandbox the pod's root container (magnetar-podinit as /pause), for
# Quark the sandbox itself (Quark's kernel; the stand-in's sandbox process
# in the tests)
pid1_is_init() {
  local want=/pause
  case "$RUNTIME_HANDLER" in
  runc) ;;
  magnetar-vmm) want="^/init __magnetar_pod_init " ;;
  magnetar-gvisor) want="^/pause __magnetar_pod_init " ;;
  magnetar-quark) want="^[^ ]*quark boot " ;;
  *) want="magnetar-podinit __magnetar_pod_init" ;;
  esac
  expect_match "PID 1 of the shared pod" "$(exec_out "$SB" cat /proc/1/cmdline | tr '\0' ' ')" "$want"
}
b_alive() { expect_eq "b state" "$(ctr_state "$SB")" CONTAINER_RUNNING; }
not_sees_other() {
  local out
  out=$(ps_of "$PB")
  expect_nomatch "ps in b (private pid ns)" "$out" "sleep 3601"
  expect_match "ps in b (private pid ns)" "$out" "sleep 3602"
}
own_pid1() {
  # with a private PID namespace the container's process is PID 1
  expect_match "PID 1 in b" "$(ps_of "$PB" | awk '$1 == 1')" "sleep 3602"
}

req  "runp shared (pid=POD)" run_pod shared '{ "pid": 0 }'; SHARED=$LAST
req  "start a" start_ctr "$SHARED" shared a "$BUSYBOX_IMAGE" "$A_CMD"; SA=$LAST
req  "start b" start_ctr "$SHARED" shared b "$BUSYBOX_IMAGE" "$B_CMD"; SB=$LAST
req  "a and b RUNNING" running2 "$SA" "$SB"
step "shared: b sees a's process" sees_other
step "shared: a sees b's process" a_sees_b
step "shared: PID 1 is the pod's init" pid1_is_init
step "shared: b kills a; a EXITED 143" kill_other
step "shared: b still RUNNING" b_alive
step "shared: rmp -f" crictl rmp -f "$SHARED"

req  "runp private (pid=CONTAINER)" run_pod private '{ "pid": 1 }'; PRIVATE=$LAST
req  "start a" start_ctr "$PRIVATE" private a "$BUSYBOX_IMAGE" "$A_CMD"; PA=$LAST
req  "start b" start_ctr "$PRIVATE" private b "$BUSYBOX_IMAGE" "$B_CMD"; PB=$LAST
req  "a and b RUNNING" running2 "$PA" "$PB"
step "private: b does not see a's process" not_sees_other
step "private: b's process is PID 1" own_pid1
step "private: rmp -f" crictl rmp -f "$PRIVATE"
