#!/usr/bin/env bash
# hack/e2e/resources.sh: container resources through CRI.
#   - a memory limit is applied to the container's cgroup;
#   - `crictl update` changes it on a running container (Task.Update);
#   - a container that outgrows its limit is OOM-killed: CONTAINER_EXITED,
#     exit code 137, reason OOMKilled (containerd's CRI sets the reason from
#     the TaskOOM event the sandboxer publishes);
#   - stats report the container's memory.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [WORK=...] hack/e2e/resources.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
e2e_init

# res_ctr POD NAME LIMIT CMD_JSON: a busybox container with a memory limit
res_ctr() {
  local f=$T/$1.$2.ctr.json
  cat > "$f" <<JSON
{
  "metadata": { "name": "$2" },
  "image": { "image": "$BUSYBOX_IMAGE" },
  "command": $4,
  "log_path": "$2.log",
  "linux": { "resources": { "memory_limit_in_bytes": $3 } }
}
JSON
  local id
  id=$(crictl create "$POD" "$f" "$T/$1.pod.json")
  crictl start "$id" >/dev/null
  echo "$id"
}

limit_in_ctr() {
  # cgroup v1 shows the container's own memory cgroup at /sys/fs/cgroup/memory, v2 at /sys/fs/cgroup
  exec_out "$1" sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
}
limit_applied() { expect_eq "memory limit seen in the container" "$(limit_in_ctr "$SLEEPER")" 67108864; }
update_limit() {
  crictl update --memory 100663296 "$SLEEPER" >/dev/null
  expect_eq "memory limit after update" "$(limit_in_ctr "$SLEEPER")" 100663296
}
stats_memory() {
  local out
  out=$(crictl stats -o json --id "$SLEEPER")
  expect_match "stats of the container" "$out" '"workingSetBytes"'
}
oom_killed() {
  wait_ctr_state "$HOG" CONTAINER_EXITED 30
  expect_eq "exit code" "$(ctr_field "$HOG" .status.exitCode)" 137
  wait_for 10 sh -c "'$PREFIX/bin/crictl' -c '$CRICTL_CONFIG' inspect -o go-template --template '{{.status.reason}}' '$HOG' | grep -qx OOMKilled" ||
    fail "reason: '$(ctr_field "$HOG" .status.reason)', want OOMKilled"
}
pod_alive() { expect_eq "pod after an OOM kill" "$(pod_state "$POD")" SANDBOX_READY; }

req  "runp" run_pod res; POD=$LAST
req  "container with a 64 MiB limit" res_ctr res sleeper 67108864 '["sh", "-c", "exec sleep 3600"]'; SLEEPER=$LAST
step "limit applied to the cgroup" limit_applied
step "crictl update raises the limit" update_limit
step "stats report memory" stats_memory
req  "container that outgrows 16 MiB" res_ctr res hog 16777216 '["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]'; HOG=$LAST
step "hog OOM-killed: exit 137, reason OOMKilled" oom_killed
step "pod still ready" pod_alive
step "rmp" crictl rmp -f "$POD"
