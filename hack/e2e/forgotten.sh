#!/usr/bin/env bash
# hack/e2e/forgotten.sh: a sandbox the real containerd does not hold is shut
# down by its daemon (forgotten_check); one containerd holds is not. The
# daemon is restarted with forgotten_check = "2s"; a sandbox is made
# directly through its Sandbox API (hack/sbctl: containerd never hears of
# it, as of a pod containerd removed while the daemon could not answer),
# beside a CRI pod. Within a few checks the direct one is gone (Status
# NotFound, no state dir, the daemon's log says why) and the CRI pod is
# still READY and its container runs: containerd's namespaces and sandbox
# store services answered the daemon. The daemon is restarted with its
# usual configuration at the end. Skipped for the runc shim handler.
#
#   [RUNTIME_HANDLER=magnetar-runc] [WORK=...] hack/e2e/forgotten.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

CD=$ROOT/hack/containerd.sh
SB=$(sandboxer_binary "$DAEMON_HANDLER" || true)
CONF=$WORK/etc/$DAEMON_HANDLER.toml
SOCK=$WORK/run/$DAEMON_HANDLER.sock
LOGF=$WORK/logs/$DAEMON_HANDLER.log
ID=forgotten-$RANDOM$RANDOM
sbctl() { "$T/sbctl" -address "$SOCK" -sandboxer "$DAEMON_HANDLER" -timeout 30s "$@"; }

if [ -z "$SB" ]; then
  skip "forgotten sandboxes" "no sandboxer daemon"
  exit 0
fi

build_sbctl() { (cd "$ROOT" && CGO_ENABLED=0 go build -o "$T/sbctl" ./hack/sbctl); }
# with_check: the daemon restarted with forgotten_check = "2s" (a top-level
# key: before the file's tables); restore puts its own file back
with_check() {
  cp "$CONF" "$T/conf.orig"
  { echo 'forgotten_check = "2s"'; grep -v '^forgotten_check' "$T/conf.orig"; } > "$CONF"
  "$CD" sandboxer-restart "$DAEMON_HANDLER" 2>&1
}
restore() {
  [ -f "$T/conf.orig" ] || return 0
  cp "$T/conf.orig" "$CONF" && rm -f "$T/conf.orig"
  "$CD" sandboxer-restart "$DAEMON_HANDLER" 2>&1
}
# whatever ends the suite: no direct sandbox, the daemon's own configuration
trap 'fg_rc=$?; { [ ! -x "$T/sbctl" ] || sbctl shutdown "$ID" >/dev/null 2>&1 || true; restore >/dev/null 2>&1 || true; }; (exit $fg_rc); e2e_finish' EXIT
direct_sandbox() {
  sbctl -cgroup-parent "$CGROUP_PARENT" create "$ID"
  sbctl start "$ID"
  expect_match "status of the direct sandbox" "$(sbctl status "$ID")" "SANDBOX_READY"
  [ -d "$WORK/lib/$DAEMON_HANDLER/sandboxes/$ID" ] || fail "no state dir of $ID"
}
gone() { ! sbctl status "$ID" 2>"$T/status.err" && grep -q "NotFound" "$T/status.err"; }
shut_down() {
  wait_for 30 gone || fail "the sandbox containerd does not hold is still there 30 s into checks every 2 s: $(sbctl status "$ID" 2>&1)"
  [ ! -e "$WORK/lib/$DAEMON_HANDLER/sandboxes/$ID" ] || fail "its state dir is left: $(ls "$WORK/lib/$DAEMON_HANDLER/sandboxes/$ID")"
  grep -q "shutting down a sandbox containerd no longer holds.*$ID\|$ID.*shutting down a sandbox containerd no longer holds" "$LOGF" ||
    fail "the daemon's log does not say why it shut $ID down"
  [ -z "$(pgrep -f -- "$ID" || true)" ] || fail "processes of $ID left: $(pgrep -af -- "$ID")"
}
cri_pod_kept() {
  expect_eq "state of the CRI pod" "$(pod_state "$P")" SANDBOX_READY
  expect_eq "state of its container" "$(ctr_state "$C")" CONTAINER_RUNNING
  expect_eq "exec in it" "$(exec_out "$C" echo kept | tr -d '\n')" kept
}
# containerd's connection to the restarted daemon is back after its
# reconnect backoff (about a second): until then CRI calls fail Unavailable
remove() {
  wait_for 15 crictl rmp -f "$P"
  expect_eq "pods of this test left" "$(suite_pods)" ""
}

req  "build hack/sbctl" build_sbctl
req  "daemon restarted with forgotten_check = 2s" with_check
req  "CRI pod" run_pod fg; P=$LAST
req  "its container" start_ctr "$P" fg c "$BUSYBOX_IMAGE" '["sleep", "3600"]'; C=$LAST
step "container RUNNING" wait_ctr_state "$C" CONTAINER_RUNNING 10
req  "a sandbox made directly, that containerd does not hold" direct_sandbox
step "shut down within a few checks, nothing of it left" shut_down
step "the CRI pod untouched: READY, its container runs, exec works" cri_pod_kept
step "daemon restarted with its own configuration" restore
step "remove the CRI pod" remove
