#!/usr/bin/env bash
# hack/e2e/lib.sh: assertions and CRI helpers for the e2e scripts. Source it
# from a script in hack/e2e/; the harness must run (hack/containerd.sh start).
#
#   step NAME CMD...   run CMD (a command or a function) in a subshell with
#                      errexit on, stdin from /dev/null; count it as passed or
#                      failed; its stdout is left in $LAST. On failure print its
#                      output and the new error lines of the sandboxer and
#                      containerd logs. Never call step inside if/&&/|| (bash
#                      would silently turn errexit off inside CMD).
#   req NAME CMD...    like step, but a failure ends the script (later steps
#                      depend on it); the EXIT trap still cleans up and prints
#                      the summary.
#   skip NAME REASON   count a step as skipped, saying why
#   e2e_finish         (EXIT trap) removes this script's pods and prints
#                      exactly "e2e: N passed, M failed" (", K skipped" after
#                      it when a step was skipped); exit 1 if M > 0.
#
# Settings: RUNTIME_HANDLER (default magnetar-runc; "runc" = containerd's runc
# shim, to validate the scripts themselves), WORK (hack/lib.sh), E2E_KEEP=1
# keeps the scratch dir $T (pod/container JSON, container logs), E2E_LOGS
# (more logs whose new lines a failed step shows, e.g. the kubelet's).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# errexit also inside $(...): a helper whose first command fails must not go
# on and print something that looks like a result
shopt -s inherit_errexit

RUNTIME_HANDLER=${RUNTIME_HANDLER:-magnetar-runc}
SUITE=${SUITE:-$(basename "$0" .sh)}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-docker.io/library/busybox:latest}
WEB_IMAGE=${WEB_IMAGE:-localhost/magnetar/web:v1}
CRICTL_TIMEOUT=${CRICTL_TIMEOUT:-90}
E2E_PASS=0
E2E_FAIL=0
E2E_SKIP=0
LAST=
STEP_RC=0

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# crictl with the harness config, bounded in time
crictl() { timeout -k 5 "$CRICTL_TIMEOUT" "$PREFIX/bin/crictl" -c "$CRICTL_CONFIG" "$@"; }

# --- assertions ----------------------------------------------------------------

# log files whose new lines are shown when a step fails
_e2e_logs() {
  if [ "$RUNTIME_HANDLER" != runc ]; then echo "$WORK/logs/$(daemon_handler "$RUNTIME_HANDLER").log"; fi
  echo "$WORK/logs/containerd.log"
  local f
  for f in ${E2E_LOGS:-}; do echo "$f"; done
}
_e2e_mark() {
  local f
  _E2E_SIZES=()
  for f in $(_e2e_logs); do _E2E_SIZES+=("$(stat -c %s "$f" 2>/dev/null || echo 0)"); done
}
_e2e_excerpt() { # new warning/error lines (else the last lines) of each log since _e2e_mark
  local f i=0 new
  for f in $(_e2e_logs); do
    if [ -f "$f" ]; then
      new=$(tail -c +"$(( ${_E2E_SIZES[$i]:-0} + 1 ))" "$f")
      if [ -n "$new" ]; then
        echo "    --- $(basename "$f") (new lines during the step):"
        { grep -Ei 'level=(error|warn|fatal)|"level":"(error|warn)|panic|error' <<<"$new" || tail -n 10 <<<"$new"; } |
          tail -n 15 | cut -c1-400 | sed 's/^/    | /'
      else
        echo "    --- $(basename "$f"): no new lines during the step"
      fi
    fi
    i=$((i + 1))
  done
}

# _e2e_clip FILE: at most 15 lines of FILE: its first 4 (where a failure
# says what failed) and its last 11
_e2e_clip() {
  local n
  n=$(wc -l <"$1")
  if [ "$n" -le 15 ]; then cat "$1"; return; fi
  head -n 4 "$1"
  echo "[... $((n - 15)) lines ...]"
  tail -n 11 "$1"
}

step() {
  local name=$1 t0 ms
  shift
  _e2e_mark
  t0=$(now_ms)
  set +e
  ( set -e; "$@" ) >"$T/.out" 2>"$T/.err" </dev/null
  STEP_RC=$?
  set -e
  ms=$(( $(now_ms) - t0 ))
  LAST=$(cat "$T/.out")
  if [ "$STEP_RC" -eq 0 ]; then
    E2E_PASS=$((E2E_PASS + 1))
    printf 'ok   %s: %s (%d ms)\n' "$SUITE" "$name" "$ms"
  else
    E2E_FAIL=$((E2E_FAIL + 1))
    printf 'FAIL %s: %s (rc=%d, %d ms) [handler %s]\n' "$SUITE" "$name" "$STEP_RC" "$ms" "$RUNTIME_HANDLER"
    if [ -s "$T/.out" ]; then echo "    stdout:"; _e2e_clip "$T/.out" | cut -c1-400 | sed 's/^/    | /'; fi
    if [ -s "$T/.err" ]; then echo "    stderr:"; _e2e_clip "$T/.err" | cut -c1-400 | sed 's/^/    | /'; fi
    _e2e_excerpt
  fi
  return 0
}

req() {
  step "$@"
  if [ "$STEP_RC" -ne 0 ]; then
    echo "     $SUITE: stopping here, later steps depend on \"$1\""
    exit 1
  fi
}

# debug_configured: the harness gave the handler's daemon a debug socket
# (hack/containerd.sh does; an installed package's default config does not)
debug_configured() {
  grep -qs '^debug_socket = "/' "$WORK/etc/$(daemon_handler "$RUNTIME_HANDLER").toml"
}
# debug_profiles: the handler's daemon serves its Go profiles on its debug
# socket (the harness configures one), mode 0600, and nothing else there
debug_profiles() {
  local sock out
  sock=$(debug_socket_of "$(daemon_handler "$RUNTIME_HANDLER")")
  [ -S "$sock" ] || fail "no debug socket at $sock"
  expect_eq "debug socket mode" "$(stat -c %a "$sock")" 600
  out=$(curl -sSf --max-time 10 --unix-socket "$sock" 'http://magnetar/debug/pprof/goroutine?debug=1')
  expect_match "goroutine profile" "$out" "shared/daemon\.serve"
  # whole, into a file: a reader that stops early fails curl (pipefail)
  curl -sSf --max-time 10 --unix-socket "$sock" -o "$T/heap.pb.gz" http://magnetar/debug/pprof/heap
  [ "$(head -c 2 "$T/heap.pb.gz" | od -An -tx1 | tr -d ' \n')" = 1f8b ] || fail "the heap profile is not a gzipped profile"
  ! curl -sf --max-time 10 --unix-socket "$sock" http://magnetar/ >/dev/null || fail "the debug socket serves more than the profiles"
}

skip() {
  E2E_SKIP=$((E2E_SKIP + 1))
  printf 'skip %s: %s [handler %s: %s]\n' "$SUITE" "$1" "$RUNTIME_HANDLER" "$2"
}

# fail MESSAGE: make the current step fail with a message on stderr
fail() { echo "$*" >&2; return 1; }

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
# expect_match WHAT TEXT ERE
expect_match() { grep -Eq -- "$3" <<<"$2" || fail "$1: '$(head -c 300 <<<"$2")' does not match /$3/"; }
# expect_nomatch WHAT TEXT ERE
expect_nomatch() { ! grep -Eq -- "$3" <<<"$2" || fail "$1: '$(head -c 300 <<<"$2")' matches /$3/"; }

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds
wait_for() {
  local deadline=$(( $(now_ms) + $1 * 1000 ))
  shift
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      fail "timed out waiting for: $*"
      return 1
    fi
    sleep 0.1
  done
}

# --- CRI helpers -------------------------------------------------------------------

# pod_json NAME [NAMESPACE_OPTIONS_JSON] [EXTRA_LINUX_JSON]: write a pod config
# (labelled for cleanup, own log dir, cgroup parent) and print its path
pod_json() {
  local name=$1 ns=${2:-} extra=${3:-} f=$T/$1.pod.json uid
  uid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$T/logs/$name"
  local sc=""
  rm -f "$T/$name.pod.ns"
  if [ -n "$ns" ]; then
    sc=", \"security_context\": { \"namespace_options\": $ns }"
    echo "$ns" > "$T/$name.pod.ns"
  fi
  if [ -n "$extra" ]; then sc="$sc, $extra"; fi
  cat > "$f" <<EOF
{
  "metadata": { "name": "$name", "namespace": "magnetar-e2e", "uid": "$uid", "attempt": 1 },
  "hostname": "$name",
  "labels": { "magnetar-e2e": "$SUITE" },
  "log_directory": "$T/logs/$name",
  "linux": { "cgroup_parent": "$CGROUP_PARENT"$sc }
}
EOF
  echo "$f"
}

# ctr_json POD_NAME NAME IMAGE CMD_JSON [EXTRA_FIELDS_JSON]: write a container
# config (log NAME.log in the pod's log dir) and print its path. Like kubelet,
# the container gets the pod's namespace_options (CRI takes the container's).
ctr_json() {
  local pod=$1 name=$2 image=$3 cmd=$4 extra=${5:-} f=$T/$1.$2.ctr.json
  local c="" linux="{}"
  if [ -f "$T/$pod.pod.ns" ]; then linux="{ \"security_context\": { \"namespace_options\": $(cat "$T/$pod.pod.ns") } }"; fi
  if [ -n "$cmd" ]; then c="\"command\": $cmd,"; fi
  if [ -n "$extra" ]; then extra="$extra,"; fi
  cat > "$f" <<EOF
{
  "metadata": { "name": "$name" },
  "image": { "image": "$image" },
  $c $extra
  "log_path": "$name.log",
  "linux": $linux
}
EOF
  echo "$f"
}

# run_pod NAME [NAMESPACE_OPTIONS_JSON]: runp with $RUNTIME_HANDLER, prints the pod id
run_pod() {
  local f
  f=$(pod_json "$@")
  crictl runp -r "$RUNTIME_HANDLER" "$f"
}

# start_ctr POD_ID POD_NAME NAME IMAGE CMD_JSON [EXTRA]: create + start, prints the id
start_ctr() {
  local pod=$1 podname=$2 f id
  shift 2
  f=$(ctr_json "$podname" "$@")
  id=$(crictl create "$pod" "$f" "$T/$podname.pod.json")
  crictl start "$id" >/dev/null
  echo "$id"
}

pod_state() { crictl inspectp -o go-template --template '{{.status.state}}' "$1"; }
ctr_state() { crictl inspect -o go-template --template '{{.status.state}}' "$1"; }
ctr_field() { crictl inspect -o go-template --template "{{$2}}" "$1"; }
is_pod_state() { [ "$(pod_state "$1")" = "$2" ]; }
is_ctr_state() { [ "$(ctr_state "$1")" = "$2" ]; }
# wait_ctr_state ID STATE [SECONDS]
wait_ctr_state() { wait_for "${3:-10}" is_ctr_state "$1" "$2"; }
wait_pod_state() { wait_for "${3:-10}" is_pod_state "$1" "$2"; }
# exec_out ID CMD...: ExecSync stdout (crictl exec -s)
exec_out() { local id=$1; shift; crictl exec -s "$id" "$@"; }
# exec_sync_code ID CMD...: print the exit code of an ExecSync (crictl exec -s
# prints "... exited with N" and exits 1 instead of returning N)
exec_sync_code() {
  local id=$1 out
  shift
  if out=$(crictl exec -s "$id" "$@" 2>&1); then echo 0; return 0; fi
  sed -n 's/.*exited with \([0-9][0-9]*\).*/\1/p' <<<"$out" | tail -1 | grep . || fail "no exit code in: $out"
}
# pods of this suite still known to CRI
suite_pods() { crictl pods -q --label "magnetar-e2e=$SUITE"; }

# --- setup and summary ------------------------------------------------------------

# plant_canaries POD_ID CTR_ID: put an empty file of a random name ($CANARY)
# in the directories of the handler's daemon (state and run dir; containerd's
# runc shim has none), of containerd (root, state), and in each directory of
# the pod and of the container below them (not crossing into another file
# system: the container's rootfs is one). Sets CANARY and CANARY_DIRS (one
# per line); the EXIT trap removes them (remove_canaries). A container must
# then find none of them, nor any of those directories by its path.
plant_canaries() {
  local POD=$1 CID=$2
  CANARY=magnetar-canary-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  trap 'rc=$?; remove_canaries; (exit $rc); e2e_finish' EXIT
  CANARY_DIRS=$(_canary_dirs)
}
_canary_dirs() {
  local d roots=("$WORK/root" "$WORK/state") by
  if [ "$RUNTIME_HANDLER" != runc ]; then
    by=$(daemon_handler "$RUNTIME_HANDLER")
    roots+=("$WORK/lib/$by" "$WORK/run/$by" "$(run_dir_of "${by#magnetar-}")")
  fi
  for d in "${roots[@]}"; do
    [ -d "$d" ] || continue
    echo "$d"
    find "$d" -xdev -maxdepth 6 -type d \( -name "*$POD*" -o -name "*$CID*" \) 2>/dev/null
  done | sort -u | while read -r d; do
    : > "$d/$CANARY" && echo "$d"
  done
}
remove_canaries() {
  local d
  for d in ${CANARY_DIRS:-}; do rm -f "$d/$CANARY"; done
}

e2e_finish() {
  local rc=$? p
  set +e
  if [ -n "${T:-}" ] && [ -d "$T" ]; then
    for p in $(suite_pods 2>/dev/null); do
      crictl rmp -f "$p" >/dev/null 2>&1 || echo "     $SUITE: cleanup: rmp -f $p failed"
    done
    if [ "${E2E_KEEP:-0}" = 1 ] || [ "$E2E_FAIL" -gt 0 ]; then echo "     $SUITE: scratch dir kept: $T"; else rm -rf "$T"; fi
  fi
  if [ "$rc" -ne 0 ] && [ "$E2E_FAIL" -eq 0 ]; then
    echo "FAIL $SUITE: script error (rc=$rc)"
    E2E_FAIL=1
  fi
  echo "e2e: $E2E_PASS passed, $E2E_FAIL failed$([ "$E2E_SKIP" -eq 0 ] || echo ", $E2E_SKIP skipped")"
  if [ "$E2E_FAIL" -gt 0 ]; then exit 1; fi
  exit 0
}

# e2e_init: check the harness is up and RUNTIME_HANDLER is configured
e2e_init() {
  trap e2e_finish EXIT
  trap 'exit 130' INT TERM
  if [ ! -f "$WORK/etc/harness.env" ] || ! crictl info >/dev/null 2>&1; then
    echo "FAIL $SUITE: no harness containerd at $CSOCK: run hack/containerd.sh start (WORK=$WORK)"
    E2E_FAIL=1; exit 1
  fi
  source "$WORK/etc/harness.env"
  if [[ " $HANDLERS " != *" $RUNTIME_HANDLER "* ]]; then
    local bin
    if bin=$(sandboxer_binary "$RUNTIME_HANDLER") && [ ! -x "$ROOT/bin/$bin" ]; then
      echo "FAIL $SUITE: bin/$bin missing: run make build (then restart the harness: hack/containerd.sh stop; hack/containerd.sh start)"
    else
      echo "FAIL $SUITE: runtime handler $RUNTIME_HANDLER not configured in this containerd (have: $HANDLERS); restart it: hack/containerd.sh stop; hack/containerd.sh start"
    fi
    E2E_FAIL=1; exit 1
  fi
  # the handler whose daemon serves RUNTIME_HANDLER (an alias shares one)
  DAEMON_HANDLER=$(daemon_handler "$RUNTIME_HANDLER")
  mkdir -p "$WORK/tmp"
  T=$(mktemp -d "$WORK/tmp/e2e-$SUITE.XXXXXX")
  echo "=== $SUITE (handler $RUNTIME_HANDLER)"
}
