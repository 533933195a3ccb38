#!/usr/bin/env bash
# hack/vmm/e2e/volume.sh: host directories reach the guest (virtio-fs).
#   ro   a host directory mounted read-only: the container reads the file
#        the host wrote, and cannot write
#   rw   a host directory mounted read-write: the host sees what the
#        container wrote, and the container sees what the host writes later
# plus a container with a read-only rootfs. Nothing stays mounted on the
# host once the pod is gone.
#
#   RUNTIME_HANDLER=magnetar-vmm [WORK=...] hack/vmm/e2e/volume.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

RO=$T/vol-ro RW=$T/vol-rw
mkdir -p "$RO" "$RW"
echo from-the-host > "$RO/hello.txt"
MOUNTS="\"mounts\": [ { \"container_path\": \"/data/ro\", \"host_path\": \"$RO\", \"readonly\": true },
  { \"container_path\": \"/data/rw\", \"host_path\": \"$RW\" } ]"
SLEEP='["sh", "-c", "exec sleep 3600"]'

reads_ro() { expect_eq "read-only volume" "$(exec_out "$C" cat /data/ro/hello.txt)" "from-the-host"; }
ro_refuses() {
  if out=$(exec_out "$C" sh -c 'echo x > /data/ro/new' 2>&1); then fail "write into the read-only volume succeeded"; fi
  [ ! -e "$RO/new" ] || fail "the file appeared on the host"
}
writes_rw() {
  exec_out "$C" sh -c 'echo from-the-vm > /data/rw/out.txt' >/dev/null
  expect_eq "host sees the guest's file" "$(cat "$RW/out.txt")" "from-the-vm"
}
sees_later() {
  echo later > "$RW/later.txt"
  expect_eq "guest sees a file the host wrote after start" "$(exec_out "$C" cat /data/rw/later.txt)" "later"
}
ro_rootfs() {
  local id f=$T/rootro.ctr.json
  # (ctr_json writes its own "linux" object: this one is written whole)
  cat > "$f" <<JSON
{ "metadata": { "name": "rootro" }, "image": { "image": "$BUSYBOX_IMAGE" }, "command": $SLEEP,
  "log_path": "rootro.log", "linux": { "security_context": { "readonly_rootfs": true } } }
JSON
  id=$(crictl create "$POD" "$f" "$T/vol.pod.json")
  crictl start "$id" >/dev/null
  wait_ctr_state "$id" CONTAINER_RUNNING 30
  if exec_out "$id" touch /x >/dev/null 2>&1; then fail "write into a read-only rootfs succeeded"; fi
}
nothing_mounted() { expect_eq "host mounts of this suite's volumes" "$(grep -c -- "$T" /proc/mounts || true)" 0; }

req  "runp" run_pod vol; POD=$LAST
req  "container with a ro and a rw volume" start_ctr "$POD" vol c "$BUSYBOX_IMAGE" "$SLEEP" "$MOUNTS"; C=$LAST
req  "container running" wait_ctr_state "$C" CONTAINER_RUNNING 30
step "reads the read-only volume" reads_ro
step "cannot write the read-only volume" ro_refuses
step "writes the read-write volume" writes_rw
step "sees what the host writes later" sees_later
step "read-only rootfs" ro_rootfs
step "rmp -f" crictl rmp -f "$POD"
step "no volume left mounted" nothing_mounted
