#!/usr/bin/env bash
# hack/quark/critest-check.sh LOG EXPECTED: holds critest's failures (the
# "  [FAIL] ..." lines hack/critest.sh prints into LOG) against EXPECTED, one
# spec a line (its text as ginkgo prints it after "[FAIL] ", up to the first
# " [" ; "#" comments and blank lines ignored). A failure not listed fails,
# and so does a listed spec that did not fail (a stale expectation: remove
# it). Prints each expected failure, then
#   critest: P passed, F failed, S skipped
# where P is critest's passes, F the unexpected failures plus the stale
# expectations, S critest's skips plus the expected failures. Exit 1 when
# F > 0, or when LOG has no critest result.
set -euo pipefail
LOG=$1 EXPECTED=$2
line=$(grep -E '^critest: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$LOG" | tail -1 || true)
if [ -z "$line" ]; then echo "critest: no result in $LOG"; echo "critest: 0 passed, 1 failed, 0 skipped"; exit 1; fi
read -r p f s < <(sed 's/critest: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/' <<<"$line")
# the failed specs: "  [FAIL] [sig-node] Container runtime ... should x [Conformance]" -> "should x"'s full text
failed=$(sed -n 's/^ *\[FAIL\] //p' "$LOG" | sed 's/ \[[A-Za-z].*$//' | sort -u)
want=$(grep -vE '^\s*(#|$)' "$EXPECTED" | sed 's/[[:space:]]*$//' | sort -u || true)
bad=0 expected=0
while IFS= read -r spec; do
  [ -n "$spec" ] || continue
  if grep -qxF -- "$spec" <<<"$want"; then
    echo "expected failure: $spec"; expected=$((expected + 1))
  else
    echo "FAIL critest: unexpected failure: $spec"; bad=$((bad + 1))
  fi
done <<<"$failed"
while IFS= read -r spec; do
  [ -n "$spec" ] || continue
  if ! grep -qxF -- "$spec" <<<"$failed"; then
    echo "FAIL critest: expected to fail but did not (remove it from $EXPECTED): $spec"; bad=$((bad + 1))
  fi
done <<<"$want"
nfailed=$(grep -c . <<<"$failed" || true)
if [ "$f" -gt "$nfailed" ]; then
  echo "FAIL critest: $f specs failed but only $nfailed are named in $LOG"; bad=$((bad + f - nfailed))
fi
echo "critest: $p passed, $bad failed, $((s + expected)) skipped"
[ "$bad" -eq 0 ]
