#!/usr/bin/env bash
# hack/wasm/e2e/basic.sh: one handler (RUNTIME_HANDLER, default magnetar-wasm)
# end to end through crictl: engine by handler, output in crictl logs (stdout
# and stderr), exit codes in crictl inspect, args/env/cwd, preopened files
# read and written (rootfs, bind mounts, read-only mounts), no escape, traps,
# bad and missing modules, stdin, exec, stop of sleeping and spinning
# modules (timed through crictl, and the kill itself from the daemon's debug
# log: under 100 ms), stats, memory limit, update, a pod of several containers.
source "$(dirname "$0")/lib.sh"
e2e_init

case "$RUNTIME_HANDLER" in
*wazero*) WANT_ENGINE=wazero ;;
*) WANT_ENGINE=wasmtime ;;
esac
STOP_MAX_MS=${STOP_MAX_MS:-3000}
# the bound of the kill itself inside the daemon (signal to end, from its
# debug log): the module is interrupted, not waited for; a host takes a few
# ms, an emulated guest (make cgroupv2-test) hundreds
KILL_MAX_MS=${KILL_MAX_MS:-100}
# WASM_BASIC_SET: all (the default), or cgroups: what a cgroup hierarchy
# decides (stats, update, memory limit and OOMKilled, pod cleanup), for
# make cgroupv2-smoke
WASM_BASIC_SET=${WASM_BASIC_SET:-all}
case "$WASM_BASIC_SET" in all | cgroups) ;; *) echo "WASM_BASIC_SET=$WASM_BASIC_SET: want all or cgroups" >&2; exit 2 ;; esac
all_set() { [ "$WASM_BASIC_SET" = all ]; }

req "pod ready" bash -c 'true'
POD=$(run_pod wbasic)
pod_ready() {
  is_pod_state "$POD" SANDBOX_READY || fail "pod state $(pod_state "$POD")"
  local eng
  eng=$(crictl inspectp -o go-template --template '{{.engine}}' "$POD")
  expect_eq "engine of handler $RUNTIME_HANDLER" "$eng" "$WANT_ENGINE"
}
req "pod ready on engine $WANT_ENGINE (picked by the proxy plugin name)" pod_ready

if all_set; then
# --- output and exit codes ---------------------------------------------------------
hello() {
  local id
  id=$(start_ctr "$POD" wbasic hello "$GO_IMAGE" "")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 0
  expect_eq "stdout" "$(out "$id")" "hello from wasm"
  expect_eq "stderr" "$(err "$id")" "hello on stderr"
}
step "Go module: stdout and stderr in crictl logs, exit 0" hello

second_no_compile() {
  local id line
  id=$(start_ctr "$POD" wbasic hello2 "$GO_IMAGE" "")
  wait_exited "$id"
  expect_eq "stdout" "$(out "$id")" "hello from wasm"
  line=$(grep "wasm container created" "$WASM_LOG" | grep "container_id=$id" | tail -1)
  expect_match "load of the second container" "$line" 'load=(memory|disk)'
  echo "second container of the image: $(grep -o 'load=[a-z]*' <<<"$line")"
}
step "the second container of an image starts without compiling" second_no_compile; show

tty_refused() {
  local id rc=0
  id=$(create_ctr "$POD" wbasic tty "$GO_IMAGE" "" '"tty": true')
  crictl start "$id" >"$T/tty.start" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "a tty container started"
  expect_match "crictl start error" "$(cat "$T/tty.start")" 'terminal'
  no_mounts_of "$id"
  crictl rm "$id" >/dev/null
}
step "a tty container is refused with a clear error" tty_refused

exit_n() {
  local n=$1 id
  id=$(start_ctr "$POD" wbasic "exit$n" "$GO_IMAGE" "[\"/guest.wasm\",\"exit\",\"$n\"]")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" "$n"
  expect_match "stdout" "$(out "$id")" "exiting with $n"
}
for n in 3 42 125 126 200 255; do step "exit code $n in crictl inspect" exit_n "$n"; done

args_env() {
  local id o
  id=$(start_ctr "$POD" wbasic args "$GO_IMAGE" '["/guest.wasm","args","two words","x=y"]' \
    '"envs": [{"key": "FOO", "value": "bar baz"}], "working_dir": "/data"')
  wait_exited "$id"
  o=$(out "$id")
  expect_match "argv[0]" "$o" '^arg\[0\]=/guest.wasm$'
  expect_match "argv[2]" "$o" '^arg\[2\]=two words$'
  expect_match "argv[3]" "$o" '^arg\[3\]=x=y$'
  expect_match "env from the container" "$o" '^env FOO=bar baz$'
  expect_match "env from the image" "$o" '^env GREETING=from-image$'
  expect_match "cwd" "$o" '^cwd /data'
  expect_eq "exit code" "$(exit_code "$id")" 0
}
step "WASI args, env (image + container) and cwd" args_env

read_rootfs() {
  local id
  id=$(start_ctr "$POD" wbasic catin "$GO_IMAGE" '["/guest.wasm","cat","/etc/input.txt"]')
  wait_exited "$id"
  expect_eq "file of the image" "$(out "$id")" "input file of the wasm image"
  expect_eq "exit code" "$(exit_code "$id")" 0
}
step "reads a file of the image (rootfs preopened at /)" read_rootfs

write_rootfs() {
  local id
  id=$(start_ctr "$POD" wbasic wroot "$GO_IMAGE" '["/guest.wasm","write","/tmp/new.txt","written in the rootfs"]')
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 0
  expect_match "read back" "$(out "$id")" "wrote /tmp/new.txt: written in the rootfs"
}
step "writes a file in the rootfs" write_rootfs

HOSTDIR=$T/hostdir
mkdir -p "$HOSTDIR" && chmod 777 "$HOSTDIR" && echo "from the host" > "$HOSTDIR/host.txt"
bind_rw() {
  local id
  id=$(start_ctr "$POD" wbasic bindrw "$GO_IMAGE" '["/guest.wasm","write","/mnt/host/out.txt","hello host"]' \
    "\"mounts\": [{\"container_path\": \"/mnt/host\", \"host_path\": \"$HOSTDIR\"}]")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 0
  expect_eq "file on the host" "$(cat "$HOSTDIR/out.txt")" "hello host"
  id=$(start_ctr "$POD" wbasic bindcat "$GO_IMAGE" '["/guest.wasm","cat","/mnt/host/host.txt"]' \
    "\"mounts\": [{\"container_path\": \"/mnt/host\", \"host_path\": \"$HOSTDIR\"}]")
  wait_exited "$id"
  expect_eq "host file read" "$(out "$id")" "from the host"
}
step "bind mount preopened at its destination: write and read host files" bind_rw

bind_ro() {
  local id
  id=$(start_ctr "$POD" wbasic bindro "$GO_IMAGE" '["/guest.wasm","write","/mnt/ro/nope.txt","x"]' \
    "\"mounts\": [{\"container_path\": \"/mnt/ro\", \"host_path\": \"$HOSTDIR\", \"readonly\": true}]")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 1
  [ ! -e "$HOSTDIR/nope.txt" ] || fail "the module wrote through a read-only mount"
  expect_match "stderr" "$(err "$id")" "write /mnt/ro/nope.txt"
}
step "read-only bind mount refuses writes" bind_ro

escape() {
  local id o
  id=$(start_ctr "$POD" wbasic escape "$GO_IMAGE" '["/guest.wasm","escape"]')
  wait_exited "$id"
  o=$(out "$id")
  expect_match "escape attempts" "$o" 'read /\.\./\.\./\.\./\.\./etc/hostname: 0 bytes'
  expect_nomatch "escape attempts" "$o" '[1-9][0-9]* bytes, err <nil>'
}
step "no path out of the rootfs" escape

# the directories of the daemon and containerd, the pod's and a running
# container's among them, marked (hack/e2e/lib.sh plant_canaries): a module
# finds no mark in its whole file system and none of the directories
idler() {
  local id
  id=$(start_ctr "$POD" wbasic idler "$GO_IMAGE" '["/guest.wasm","idle"]')
  wait_for 10 has_output "$id" '^ready$'
  echo "$id"
}
req "a running container" idler; IDLER=$LAST
plant_canaries "$POD" "$IDLER"
no_canary() {
  local id o cmd
  [ -n "$CANARY_DIRS" ] || fail "no canary was planted"
  cmd=$(jq -cn --arg c "$CANARY" --arg d "$CANARY_DIRS" '["/guest.wasm", "find", $c] + ($d | split("\n"))')
  id=$(start_ctr "$POD" wbasic finder "$GO_IMAGE" "$cmd")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 0
  o=$(out "$id")
  expect_match "find" "$o" '^searched [0-9]+ entries$'
  expect_eq "what the module finds" "$(grep -v '^searched ' <<<"$o" || true)" ""
}
step "a module sees no directory of its sandboxer or containerd" no_canary
remove_canaries
crictl rm -f "$IDLER" >/dev/null

c_module() {
  local id
  id=$(start_ctr "$POD" wbasic chello "$C_IMAGE" "")
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 0
  expect_eq "stdout" "$(out "$id")" "hello from C"
  expect_eq "stderr" "$(err "$id")" "C on stderr"
  id=$(start_ctr "$POD" wbasic cexit "$C_IMAGE" '["/hello.wasm","exit","7"]')
  wait_exited "$id"
  expect_eq "exit code" "$(exit_code "$id")" 7
}
step "C module (wasi-libc): output and exit code" c_module

trap_case() {
  local id code
  id=$(start_ctr "$POD" wbasic ctrap "$C_IMAGE" '["/hello.wasm","trap"]')
  wait_exited "$id"
  code=$(exit_code "$id")
  [ "$code" -ne 0 ] || fail "a trap exited 0"
  expect_match "stdout before the trap" "$(out "$id")" "about to trap"
  expect_match "trap message on stderr" "$(err "$id")" "[Uu]nreachable|[Tt]rap"
  echo "trap: exit code $code"
}
step "a trap: non-zero exit, trap message on stderr" trap_case; show

# --- bad modules: a clear container failure, nothing left behind ------------------
bad_module() {
  local name=$1 image=$2 cmd=$3 want=$4 id rc=0 msg
  id=$(create_ctr "$POD" wbasic "$name" "$image" "$cmd")
  crictl start "$id" >"$T/$name.start" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "crictl start of a bad module succeeded"
  expect_match "crictl start error" "$(cat "$T/$name.start")" "$want"
  expect_eq "state" "$(ctr_state "$id")" CONTAINER_EXITED
  msg=$(ctr_field "$id" .status.message)
  expect_match "crictl inspect message" "$msg" "$want"
  no_mounts_of "$id"
  crictl rm "$id" >/dev/null
}
step "not a wasm file: fails naming the path" bad_module bad "$BAD_IMAGE" "" '/bad\.wasm.*not a WebAssembly module'
step "invalid wasm bytes: fails naming the path" bad_module broken "$BAD_IMAGE" '["/broken.wasm"]' '/broken\.wasm.*(invalid|InvalidArgument|invalid argument)'
step "missing module: fails naming the path" bad_module missing "$GO_IMAGE" '["/nope.wasm"]' 'nope\.wasm.*not found'
step "the daemon lives on after bad modules" daemon_alive

fi

# --- running containers: exec, stdin, stop ------------------------------------------
IDLE=$(start_ctr "$POD" wbasic idle "$GO_IMAGE" '["/guest.wasm","idle"]')
idle_ready() { wait_for 30 has_output "$IDLE" '^ready$'; is_ctr_state "$IDLE" CONTAINER_RUNNING || fail "state $(ctr_state "$IDLE")"; }
req "a long-running module is RUNNING" idle_ready

if all_set; then
exec_case() {
  local o
  o=$(exec_out "$IDLE" /guest.wasm args from-exec)
  expect_match "exec output" "$o" '^arg\[1\]=args$'
  expect_match "exec output" "$o" '^arg\[2\]=from-exec$'
  expect_eq "exec exit code" "$(exec_sync_code "$IDLE" /guest.wasm exit 3)" 3
  o=$(crictl exec -s "$IDLE" /nope.wasm 2>&1 || true)
  expect_match "exec of a missing module" "$o" 'nope\.wasm.*not found'
  is_ctr_state "$IDLE" CONTAINER_RUNNING || fail "container state after execs: $(ctr_state "$IDLE")"
}
step "exec runs a module of the rootfs as a new instance (output, exit code, missing module)" exec_case

stdin_case() {
  local o
  o=$(printf 'one\ntwo\n' | timeout 30 "$PREFIX/bin/crictl" -c "$CRICTL_CONFIG" exec -i "$IDLE" /guest.wasm stdin)
  expect_match "stdin line 1" "$o" '^stdin: one$'
  expect_match "stdin line 2" "$o" '^stdin: two$'
  expect_match "EOF" "$o" '^stdin: EOF$'
}
step "stdin on the FIFO (crictl exec -i)" stdin_case

fi

stats_case() {
  local mem cpu
  # the CRI stats collector runs about once a second
  sleep 1.5
  local j
  j=$(crictl stats -o json --id "$IDLE" | tr -d ' \n')
  mem=$(grep -o '"workingSetBytes":{"value":"[0-9]*"' <<<"$j" | grep -o '[0-9][0-9]*' | head -1 || true)
  cpu=$(grep -o '"usageCoreNanoSeconds":{"value":"[0-9]*"' <<<"$j" | grep -o '[0-9][0-9]*' | head -1 || true)
  echo "stats: memory $mem bytes, cpu $cpu ns"
  [ "${mem:-0}" -gt 0 ] || fail "memory working set $mem"
  # the pod's metrics (Controller.Metrics): the sum of its containers
  j=$(crictl statsp -o json --id "$POD" | tr -d ' \n')
  mem=$(grep -o '"workingSetBytes":{"value":"[0-9]*"' <<<"$j" | grep -o '[0-9][0-9]*' | head -1 || true)
  echo "pod stats: memory $mem bytes"
  [ "${mem:-0}" -gt 0 ] || fail "pod memory working set $mem"
}
step "crictl stats: memory and CPU of a wasm container, pod stats" stats_case; show
if all_set; then
if debug_configured; then
  step "the daemon's Go profiles on its debug socket (0600)" debug_profiles
else
  skip "the daemon's Go profiles on its debug socket" "its configuration has none (off by default: the installed package's)"
fi

fi
update_case() {
  local o rc=0
  o=$(crictl update --memory 67108864 "$IDLE" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "update said it applied everything"
  expect_match "update error" "$o" 'cannot apply.*memory\.limit of the running module'
  is_ctr_state "$IDLE" CONTAINER_RUNNING || fail "state after update $(ctr_state "$IDLE")"
}
step "update applies what it can and names what it cannot" update_case

if all_set; then
stop_timed() {
  local id=$1 what=$2 t0 ms
  t0=$(now_ms)
  crictl stop -t 30 "$id" >/dev/null
  ms=$(( $(now_ms) - t0 ))
  expect_eq "state" "$(ctr_state "$id")" CONTAINER_EXITED
  expect_eq "exit code" "$(exit_code "$id")" 137
  # the kill itself: from the Task.Kill that reached the daemon to the end
  # of the instance, from the daemon's log
  local k e us
  k=$(log_ns "$id" "wasm kill")
  e=$(log_ns "$id" "wasm module killed")
  us=$(( (e - k) / 1000 ))
  echo "stop of a $what module through crictl: $ms ms (CRI timeout 30 s); kill to end in the daemon: $((us / 1000)).$(printf %03d $((us % 1000))) ms"
  [ "$ms" -lt "$STOP_MAX_MS" ] || fail "stop took $ms ms, want < $STOP_MAX_MS ms"
  [ "$us" -lt $((KILL_MAX_MS * 1000)) ] || fail "the kill took $us us, want < $KILL_MAX_MS ms"
}
step "stop of a module sleeping in poll_oneoff (timed)" stop_timed "$IDLE" sleeping; show
SLEEPC=$(start_ctr "$POD" wbasic csleep "$C_IMAGE" '["/hello.wasm","sleep","3600"]')
step "a C module sleeps" wait_for 20 has_output "$SLEEPC" '^sleeping$'
step "stop of a sleeping C module (timed)" stop_timed "$SLEEPC" "sleeping C"; show
SPIN=$(start_ctr "$POD" wbasic spin "$GO_IMAGE" '["/guest.wasm","spin"]')
step "a module spins" wait_for 30 has_output "$SPIN" '^spinning$'
step "stop of a spinning module (timed)" stop_timed "$SPIN" spinning; show
STDINW=$(start_ctr "$POD" wbasic stdinwait "$GO_IMAGE" '["/guest.wasm","stdin"]' '"stdin": true')
step "a module blocked reading stdin runs" wait_for 20 is_ctr_state "$STDINW" CONTAINER_RUNNING
step "stop of a module blocked in a stdin read (timed)" stop_timed "$STDINW" "stdin-blocked"; show

fi

# limited NAME ARGS_JSON: start a container with a 64 MiB memory limit, prints its id
limited() {
  local f=$T/wbasic.$1.ctr.json id
  cat > "$f" <<EOF
{ "metadata": { "name": "$1" }, "image": { "image": "$GO_IMAGE" }, "command": $2, "log_path": "$1.log",
  "linux": { "resources": { "memory_limit_in_bytes": 67108864 } } }
EOF
  id=$(crictl create "$POD" "$f" "$T/wbasic.pod.json")
  crictl start "$id" >/dev/null
  echo "$id"
}
memlimit() {
  local id code
  id=$(limited grow '["/guest.wasm","grow","256"]')
  wait_exited "$id" 60
  code=$(exit_code "$id")
  # as the kernel's OOM killer leaves a Linux container: 137, OOMKilled (the
  # reason comes from the TaskOOM event, which may follow the exit)
  expect_eq "exit code past the limit (output $(out "$id"))" "$code" 137
  expect_nomatch "stdout" "$(out "$id")" '^grew'
  wait_for 10 sh -c "[ \"\$('$PREFIX/bin/crictl' -c '$CRICTL_CONFIG' inspect -o go-template --template '{{.status.reason}}' '$id')\" = OOMKilled ]" ||
    fail "reason: '$(ctr_field "$id" .status.reason)', want OOMKilled"
  # under the limit it works
  id=$(limited growok '["/guest.wasm","grow","8"]')
  wait_exited "$id" 60
  expect_eq "exit code under the limit" "$(exit_code "$id")" 0
  daemon_alive
}
step "memory limit: growing past it is OOMKilled (137), the daemon lives on" memlimit; show

if all_set; then
# --- a pod of several containers --------------------------------------------------
multi() {
  local p ids=() i t0 ms
  p=$(run_pod wmulti)
  for i in 1 2 3 4; do ids+=("$(start_ctr "$p" wmulti "m$i" "$C_IMAGE" '["/hello.wasm","idle"]')"); done
  for i in "${ids[@]}"; do wait_for 20 has_output "$i" '^ready$'; done
  for i in "${ids[@]}"; do is_ctr_state "$i" CONTAINER_RUNNING || fail "$i: $(ctr_state "$i")"; done
  expect_eq "containers in the pod" "$(crictl inspectp -o go-template --template '{{.containers}}' "$p")" 4
  t0=$(now_ms)
  crictl stopp "$p" >/dev/null
  ms=$(( $(now_ms) - t0 ))
  for i in "${ids[@]}"; do expect_eq "state after stopp" "$(ctr_state "$i")" CONTAINER_EXITED; done
  echo "stopp of a pod of 4 running wasm containers: $ms ms"
  crictl rmp "$p" >/dev/null
  for i in "${ids[@]}"; do no_mounts_of "$i"; done
}
step "a pod of four wasm containers: all run, stopp ends them, rmp cleans up" multi; show

fi
cleanup_case() {
  local ids
  ids=$(crictl ps -a -q --pod "$POD")
  crictl stopp "$POD" >/dev/null
  crictl rmp "$POD" >/dev/null
  for i in $ids; do no_mounts_of "$i"; done
}
step "stopp + rmp leave no mount behind" cleanup_case
