#!/usr/bin/env bash
# hack/e2e/multi.sh: one pod, three containers sharing the pod's namespaces.
#   web    busybox httpd on :80 (the web stand-in image's default command)
#   client busybox; reaches web over 127.0.0.1 (shared network namespace)
#   ipc    busybox; creates a System V shm segment with ipcmk, which client
#          must see (shared IPC namespace), and a file in /dev/shm
# All three report the pod's hostname and the same eth0 address (shared UTS
# and network namespaces). Ends with rmp -f of the pod with running containers.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/multi.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

SLEEP='["sh", "-c", "exec sleep 3600"]'

all_running() {
  local id
  for id in "$WEB" "$CLIENT" "$IPC"; do wait_ctr_state "$id" CONTAINER_RUNNING 10; done
  expect_eq "containers in the pod" "$(crictl ps -q --pod "$POD" --state running | wc -l)" 3
}
web_log() { wait_for 10 sh -c "'$PREFIX/bin/crictl' -c '$CRICTL_CONFIG' logs '$WEB' 2>&1 | grep -q '^httpd'"; }
http_localhost() {
  # httpd may need a moment after its first log line: retry for up to 5 s
  # (no wget -T: Debian busybox-static's wget segfaults with it)
  wait_for 5 crictl exec -s "$CLIENT" timeout 2 wget -q -O /tmp/page http://127.0.0.1:80/
  expect_match "page fetched over 127.0.0.1" "$(exec_out "$CLIENT" cat /tmp/page)" "magnetar web stand-in"
}
same_net() {
  local a b c
  a=$(exec_out "$WEB" ip -4 -o addr show eth0)
  b=$(exec_out "$CLIENT" ip -4 -o addr show eth0)
  c=$(exec_out "$IPC" ip -4 -o addr show eth0)
  a=$(awk '{print $4}' <<<"$a"); b=$(awk '{print $4}' <<<"$b"); c=$(awk '{print $4}' <<<"$c")
  [ -n "$a" ] || fail "web has no eth0 address"
  expect_eq "client eth0" "$b" "$a"
  expect_eq "ipc eth0" "$c" "$a"
}
same_hostname() {
  local id
  for id in "$WEB" "$CLIENT" "$IPC"; do expect_eq "hostname in $id" "$(exec_out "$id" hostname | tr -d '\r\n')" multi; done
}
shm_create() {
  local out
  out=$(exec_out "$IPC" ipcmk -M 65536)
  SHMID=$(sed -n 's/^Shared memory id: \([0-9][0-9]*\).*/\1/p' <<<"$out")
  [ -n "$SHMID" ] || fail "ipcmk said: $out"
  echo "$SHMID"
}
shm_seen() {
  local out
  out=$(exec_out "$CLIENT" cat /proc/sysvipc/shm)
  awk -v id="$SHMID" '$2 == id && $4 == 65536 {f=1} END {exit !f}' <<<"$out" ||
    fail "segment $SHMID (65536 bytes) not in the client's /proc/sysvipc/shm: $out"
  expect_match "ipcs in client" "$(exec_out "$CLIENT" ipcs -m)" " $SHMID +[0-9]+ +644 +65536 "
}
# 65536-byte segments in the host's IPC namespace
host_shm_count() { awk 'NR > 1 && $4 == 65536' /proc/sysvipc/shm | wc -l; }
shm_not_on_host() { expect_eq "host segments of 65536 bytes" "$(host_shm_count)" "$HOST_SHM"; }
devshm() {
  exec_out "$IPC" sh -c 'echo shm-from-ipc > /dev/shm/magnetar-e2e' >/dev/null
  expect_eq "/dev/shm file seen by client" "$(exec_out "$CLIENT" cat /dev/shm/magnetar-e2e)" shm-from-ipc
}
rmp_running() {
  crictl rmp -f "$POD" >/dev/null
  expect_eq "pods left" "$(crictl pods -q --id "$POD")" ""
  expect_eq "containers left" "$(crictl ps -a -q --pod "$POD")" ""
}

req  "runp" run_pod multi; POD=$LAST
req  "start web" start_ctr "$POD" multi web "$WEB_IMAGE" ""; WEB=$LAST
req  "start client" start_ctr "$POD" multi client "$BUSYBOX_IMAGE" "$SLEEP"; CLIENT=$LAST
req  "start ipc" start_ctr "$POD" multi ipc "$BUSYBOX_IMAGE" "$SLEEP"; IPC=$LAST
req  "3 containers RUNNING" all_running
step "web logs 'httpd' first" web_log
step "net: client fetches web's page over 127.0.0.1" http_localhost
step "net: same eth0 address in all containers" same_net
step "uts: pod hostname in all containers" same_hostname
HOST_SHM=$(host_shm_count)
req  "ipc: ipcmk -M 65536 in ipc" shm_create; SHMID=$LAST
if [ "$RUNTIME_HANDLER" = magnetar-gvisor ]; then
  skip "ipc: client sees the segment" "each container of a gVisor sandbox has an IPC namespace of its own in the sentry: SysV IPC is not shared between a pod's containers (/dev/shm is)"
else
  step "ipc: client sees the segment" shm_seen
fi
step "ipc: segment not in the host namespace" shm_not_on_host
step "ipc: /dev/shm shared" devshm
step "rmp -f with running containers" rmp_running
