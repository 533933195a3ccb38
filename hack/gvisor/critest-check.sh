#!/usr/bin/env bash
# hack/gvisor/critest-check.sh EXPECTED LOG RC: checks a hack/critest.sh run
# (its output in LOG, its exit code RC) against EXPECTED, the specs that are
# known to fail on magnetar-gvisor, one a line as "SPEC TEXT | why", the
# text being what ginkgo prints after [FAIL] (lines starting with # are
# comments). Prints each expected failure with its reason, each unexpected
# failure and each expected one that passed or did not run (the file is
# stale), then "critest: N passed, M failed, K skipped": M counts the
# unexpected and stale ones, K critest's skipped specs plus the expected
# failures. Exit 1 if M > 0.
set -uo pipefail
exp=$1 log=$2 rc=$3
line=$(grep -E '^critest: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
if [ -z "$line" ]; then echo "critest: no summary line in $log (exit code $rc)"; echo "critest: 0 passed, 1 failed, 0 skipped"; exit 1; fi
p=$(sed 's/^critest: \([0-9]*\) passed.*/\1/' <<<"$line")
s=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$line")
# the failed specs hack/critest.sh printed: "  [FAIL] <text>" (ginkgo may
# append a location in brackets: dropped)
mapfile -t failed < <(sed -n 's/^ *\[FAIL\] //p' "$log" | sed 's/ *\[[^]]*\]$//' | sort -u)
declare -A want=()
while IFS= read -r l; do
  case "$l" in ''|'#'*) continue ;; esac
  want["$(sed 's/ *|.*//' <<<"$l")"]=$(sed 's/^[^|]*| *//' <<<"$l")
done < "$exp"
bad=0 expected=0
for f in "${failed[@]}"; do
  [ -n "$f" ] || continue
  if [ -n "${want[$f]+x}" ]; then
    echo "expected failure: $f"
    echo "    (${want[$f]})"
    expected=$((expected + 1))
    unset "want[$f]"
  else
    echo "FAIL unexpected critest failure: $f"
    bad=$((bad + 1))
  fi
done
for k in "${!want[@]}"; do
  echo "FAIL stale expectation (the spec did not fail): $k"
  bad=$((bad + 1))
done
if [ "$rc" -ne 0 ] && [ ${#failed[@]} -eq 0 ]; then echo "FAIL critest exited $rc with no failed spec"; bad=$((bad + 1)); fi
echo "critest: $p passed, $bad failed, $(( ${s:-0} + expected )) skipped (of which $expected expected failures, $(basename "$exp"))"
[ "$bad" -eq 0 ]
