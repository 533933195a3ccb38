#!/usr/bin/env bash
# hack/critest.sh: cri-tools' CRI validation suite (critest) against one
# runtime handler of the running harness containerd (hack/containerd.sh start).
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [CRITEST_SET=basic|offline]
#   [FOCUS=regex] [SKIP=regex] hack/critest.sh [critest args]
#
# Sets of specs:
#   basic    pod sandbox, container runtime, runtime info, idempotence,
#            multiple containers and streaming specs, but not image removal,
#            host network or host port mapping (the default);
#   offline  every spec that needs nothing from outside this machine: all
#            but those that pull images only a registry has (Image Manager,
#            Image Consistency, Image Identifier, NoNewPrivs,
#            SupplementalGroupsPolicy), need a real nginx image (HostPID,
#            ContainerPID) or the host's network (host network specs), edit
#            the host's shared iptables nat table (host port mapping), and
#            MaskedPaths (Debian's busybox-static runs `ls` as a shell
#            applet, so masking /bin/ls cannot make it fail).
#
# Expected failures: hack/critest/expect/<handler>.txt lists the specs a
# handler cannot pass for a reason inherent to its technology, one per line
# as "<regex matching the spec's name> | <reason>". They are not run (added
# to SKIP) and are printed with their reasons; any other failure fails.
#
# Prints the failed specs, critest's own result line and, last,
# "critest: N passed, M failed, K skipped"; exit 1 if any spec failed.
# Full log: $WORK/logs/critest-HANDLER-TIME.log.
source "$(dirname "$0")/lib.sh"

RUNTIME_HANDLER=${RUNTIME_HANDLER:-magnetar-runc}
CRITEST_SET=${CRITEST_SET:-basic}
# a selection of the caller's own is not recorded for the conformance table
CALLER_SELECTION=${SKIP+set}${FOCUS+set}
case "$CRITEST_SET" in
  basic)
    FOCUS=${FOCUS-'PodSandbox|Container runtime|Runtime info|Idempotence|Multiple Containers|Streaming'}
    SKIP=${SKIP-'RemoveImage|host network|HostNetwork|runtime should support port mapping'} ;;
  offline)
    FOCUS=${FOCUS-}
    SKIP=${SKIP-'Image Manager|Image Consistency|Image Identifier|NoNewPrivs|SupplementalGroupsPolicy|HostPID|ContainerPID|host network|HostNetwork|port mapping with host port|MaskedPaths'} ;;
  *) die "CRITEST_SET=$CRITEST_SET: want basic or offline" ;;
esac

# expected failures of this handler (or of the handler whose daemon serves it)
EXPECT=${EXPECT:-}
if [ -z "$EXPECT" ]; then
  for h in "$RUNTIME_HANDLER" "$(daemon_handler "$RUNTIME_HANDLER")"; do
    if [ -f "$ROOT/hack/critest/expect/$h.txt" ]; then EXPECT=$ROOT/hack/critest/expect/$h.txt; break; fi
  done
fi
expected=()
if [ -n "$EXPECT" ]; then
  while IFS= read -r line; do
    line=${line%%#*}
    [[ "$line" == *"|"* ]] || continue
    re=$(sed 's/[[:space:]]*$//' <<<"${line%% | *}")
    [ -n "$re" ] || continue
    expected+=("$line")
    SKIP=${SKIP:+$SKIP|}$re
  done <"$EXPECT"
fi

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

log "critest ($CRITEST_SET) against handler $RUNTIME_HANDLER (log $LOG)"
if [ ${#expected[@]} -gt 0 ]; then
  echo "expected to fail on $RUNTIME_HANDLER, not run (${EXPECT#"$ROOT"/}):"
  for line in "${expected[@]}"; do echo "  ${line%% | *}: ${line#* | }"; done
fi
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
if [ -z "$CALLER_SELECTION" ]; then
  conformance_record "critest-$CRITEST_SET" "$RUNTIME_HANDLER" \
    "${p:-0} passed, ${f:-0} failed, ${s:-0} skipped${expected[0]:+ (${#expected[@]} expected failures not run)}"
fi
if [ "$rc" -ne 0 ] || [ "${f:-0}" -ne 0 ]; then exit 1; fi
