#!/usr/bin/env bash
# hack/vm/vm-test.sh (`make vm-test`): the VM integration tests, one at a
# time: the guest's (hack/vm/vmtest), the Cloud Hypervisor stand-in's
# (hack/standins/cloud-hypervisor) and the vmm sandboxer's that boot the
# guest image (the vm.Hypervisor conformance suite on each driver, the pod
# VM through the controller). Where they can run (root, QEMU and
# virtiofsd installed) the guest image is built first (hack/vm/guest-image.sh,
# cached) and MAGNETAR_GUEST_IMAGE set; elsewhere the tests run without it and
# skip with their reason. Prints the test lines, the failures in full, and
# last "vm: N passed, M failed, K skipped". Full log: _output/vm-test.log,
# console logs of failed tests: _output/vm-test/.
source "$(dirname "$0")/../lib.sh"
set +e
GUEST_OUT=${GUEST_OUT:-$OUT/guest}
LOG=$OUT/vm-test.log
# console logs of failed tests
export MAGNETAR_VM_LOGDIR=$OUT/vm-test
rm -rf "$MAGNETAR_VM_LOGDIR"
mkdir -p "$OUT"
cd "$ROOT" || exit 1

why=""
if [ "$(id -u)" != 0 ]; then why="not root"
elif ! command -v "${MAGNETAR_QEMU:-qemu-system-x86_64}" >/dev/null; then why="no qemu-system-x86_64 (apt-get install qemu-system-x86)"
elif [ ! -x "${MAGNETAR_VIRTIOFSD:-/usr/lib/qemu/virtiofsd}" ]; then why="no virtiofsd (/usr/lib/qemu/virtiofsd from qemu-system-common 7.2)"
fi
if [ -z "$why" ]; then
  if ! hack/vm/guest-image.sh; then
    echo "vm: guest image build failed"
    echo "vm: 0 passed, 1 failed, 0 skipped"
    exit 1
  fi
  export MAGNETAR_GUEST_IMAGE=$GUEST_OUT
else
  log "vm tests will skip: $why"
  unset MAGNETAR_GUEST_IMAGE
fi

# the stand-ins' and the sandboxer's VM tests are their TestVM* (their other
# tests are the unit stage's)
# the Cloud Hypervisor driver's suite runs on the stand-in make standins built
# (else its test builds one)
if [ -x "$CLH_STANDIN" ]; then export MAGNETAR_CLH_STANDIN=$CLH_STANDIN; fi
go test -count=1 -v -p 1 -timeout 20m ./hack/vm/vmtest/... >"$LOG" 2>&1
rc=$?
go test -count=1 -v -p 1 -timeout 20m -run '^TestVM' ./hack/standins/... ./cmd/vmm-sandboxer/... >>"$LOG" 2>&1 || rc=$?
# the result lines, a skip with its reason (the test's last message before it)
awk '/^[ \t]+[^ ]+_test\.go:[0-9]+: /{msg=$0} /^(--- |ok|FAIL|panic)|^[ \t]+--- /{print} /^[ \t]*--- SKIP/{sub(/^[ \t]+/, "    ", msg); print msg}' "$LOG" || true
if [ "$rc" -ne 0 ]; then
  echo "--- failures (from $LOG):"
  grep -E -B2 -A30 -- '^\s*--- FAIL' "$LOG" | head -300
fi
p=$(grep -cE -- '^\s*--- PASS' "$LOG")
f=$(grep -cE -- '^\s*--- FAIL' "$LOG")
s=$(grep -cE -- '^\s*--- SKIP' "$LOG")
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
echo "vm: $p passed, $f failed, $s skipped"
exit "$rc"
