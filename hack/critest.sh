#!/usr/bin/env bash
# hack/critest.sh: cri-tools' CRI validation suite (critest) against one
# runtime handler of the running harness containerd (hack/containerd.sh start).
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [FOCUS=regex] [SKIP=regex] hack/critest.sh [critest args]
#
# Default selection ("basic"): pod sandbox, container runtime, runtime info,
# idempotence, multiple containers and streaming specs; skipped are image
# removal, host-network specs (they would touch the host's network) and host
# port mapping (portmap edits the host's shared iptables nat table).
# Prints the failed specs, critest's own result line and, last,
# "critest: N passed, M failed, K skipped"; exit 1 if any spec failed.
# Full log: $WORK/logs/critest-HANDLER-TIME.log.
source "$(dirname "$0")/lib.sh"

RUNTIME_HANDLER=${RUNTIME_HANDLER:-magnetar-runc}
FOCUS=${FOCUS-'PodSandbox|Container runtime|Runtime info|Idempotence|Multiple Containers|Streaming'}
SKIP=${SKIP-'RemoveImage|host network|HostNetwork|runtime should support port mapping'}

[ -x "$PREFIX/bin/critest" ] || die "critest missing: run make tools"
"$PREFIX/bin/crictl" -c "$CRICTL_CONFIG" info >/dev/null 2>&1 ||
  die "no harness containerd at $CSOCK: run hack/containerd.sh start (WORK=$WORK)"
source "$WORK/etc/harness.env"
if [[ " $HANDLERS " != *" $RUNTIME_HANDLER "* ]]; then
  if bin=$(sandboxer_binary "$RUNTIME_HANDLER") && [ ! -x "$ROOT/bin/$bin" ]; then
    echo "bin/$bin missing: run make build" >&2
  else
    echo "runtime handler $RUNTIME_HANDLER not configured in this containerd (have: $HANDLERS)" >&2
  fi
  echo "critest: 0 passed, 1 failed, 0 skipped"
  exit 1
fi

EP=unix://$CSOCK
args=(--runtime-endpoint "$EP" --image-endpoint "$EP" --ginkgo.no-color --ginkgo.timeout=60m)
if [ -n "$FOCUS" ]; then args+=(--ginkgo.focus="$FOCUS"); fi
if [ -n "$SKIP" ]; then args+=(--ginkgo.skip="$SKIP"); fi
if [ "$RUNTIME_HANDLER" != runc ]; then args+=(--runtime-handler "$RUNTIME_HANDLER"); fi
mkdir -p "$WORK/logs" "$WORK/tmp/critest"
LOG=$WORK/logs/critest-$RUNTIME_HANDLER-$(date +%H%M%S).log

# critest's HostIpc specs create 1 MiB SysV segments on the host (ipcmk -M)
# and never remove them: remove the unattached ones that appear meanwhile.
shm_ids() { awk 'NR > 1 {print $2}' /proc/sysvipc/shm | sort; }
shm_before=$(shm_ids)

log "critest against handler $RUNTIME_HANDLER (log $LOG)"
start=$SECONDS
rc=0
(cd "$WORK/tmp/critest" && "$PREFIX/bin/critest" "${args[@]}" "$@") >"$LOG" 2>&1 || rc=$?

for id in $(comm -13 <(echo "$shm_before") <(shm_ids)); do
  if awk -v id="$id" 'NR > 1 && $2 == id && $7 == 0 && $4 == 1048576 {f=1} END {exit !f}' /proc/sysvipc/shm; then
    ipcrm -m "$id" 2>/dev/null || true
  fi
done

# failed specs from ginkgo's summary, then its result line
sed -n '/^Summarizing/,$p' "$LOG" | grep -E '^\s*\[FAIL\]' | sed 's/^ */  /' || true
grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$LOG" | tail -1 || true
line=$(grep -E '^(SUCCESS|FAIL)! -- ' "$LOG" | tail -1 || true)
echo "${line:-critest produced no result line (rc=$rc): tail of $LOG:}  ($((SECONDS - start)) s)"
if [ -z "$line" ]; then tail -20 "$LOG"; fi
p=$(sed -n 's/.*-- \([0-9]*\) Passed.*/\1/p' <<<"$line")
f=$(sed -n 's/.*| \([0-9]*\) Failed.*/\1/p' <<<"$line")
s=$(sed -n 's/.*| \([0-9]*\) Skipped.*/\1/p' <<<"$line")
if [ -z "$line" ]; then f=1; fi
echo "critest: ${p:-0} passed, ${f:-0} failed, ${s:-0} skipped"
if [ "$rc" -ne 0 ] || [ "${f:-0}" -ne 0 ]; then exit 1; fi
