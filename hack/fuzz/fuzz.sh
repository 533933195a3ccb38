#!/usr/bin/env bash
# hack/fuzz/fuzz.sh: run every Go native fuzz target (func FuzzXxx in a
# _test.go file) for FUZZTIME each, one at a time (go test refuses -fuzz with
# more than one package or target), and print a table: target, executions,
# new interesting inputs, result. Last line: "fuzz: N targets, M failed".
#
# A failing input is written by go test to the package's
# testdata/fuzz/FuzzXxx/ (commit it with the fix: `go test ./...` then runs it
# as a regression test, as it runs every committed seed).
#
# Knobs: FUZZTIME (default 1m; a duration or Nx executions, as -fuzztime
# takes), FUZZ_PARALLEL (fuzz workers, default 1: the machine's other core is
# for whatever else runs), FUZZ_MINIMIZETIME (default 2s: how long an input
# that reaches new code, or fails, is shrunk; go's default, 1m, takes a
# minute's run whole on a large package, where an execution is slow),
# FUZZ_BUILD_JOBS (test binaries built at once, default 2), FUZZ_MATCH (a
# regexp over "package.FuzzXxx": run only those). Logs:
# _output/fuzz/<package>.<target>.log.
source "$(dirname "$0")/../lib.sh"
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZ_MINIMIZETIME=${FUZZ_MINIMIZETIME:-2s}
FUZZ_BUILD_JOBS=${FUZZ_BUILD_JOBS:-2}
FUZZ_MATCH=${FUZZ_MATCH:-.}
LOGS=$OUT/fuzz
BINS=$LOGS/bin
mkdir -p "$BINS"
cd "$ROOT"
MODULE=$(awk '$1 == "module" {print $2; exit}' go.mod)

# targets: "<package dir> <FuzzName>" for every fuzz function of the module
targets() {
  git ls-files '*_test.go' 2>/dev/null | xargs grep -H -oE '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' |
    sed -E 's|^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+).*|\1 \2|' | sort -u
}

# binary DIR: the package's instrumented test binary
binary() { printf '%s/%s.test' "$BINS" "$(printf '%s' "$1" | tr / _)"; }

# build DIR: one instrumented test binary per package (go test -c -fuzz: go
# refuses -fuzz with several packages), run once per target: a link per
# package, not per target. No binary (and the log says why) when it fails.
build() {
  local bin
  bin=$(binary "$1")
  rm -f "$bin"
  "$GO" test -c -fuzz=. -o "$bin" "./$1" >"$LOGS/$(printf '%s' "$1" | tr / _).build.log" 2>&1 || rm -f "$bin"
}
export -f build binary
export GO BINS LOGS

sel=()
while read -r dir name; do
  if [ -n "$name" ] && [[ "${dir#./}.$name" =~ $FUZZ_MATCH ]]; then sel+=("$dir $name"); fi
done < <(targets)
[ "${#sel[@]}" -gt 0 ] || die "no fuzz targets match $FUZZ_MATCH"

start=$(date +%s)
printf '%s\n' "${sel[@]}" | cut -d' ' -f1 | sort -u | xargs -P "$FUZZ_BUILD_JOBS" -I{} bash -c 'build "$@"' _ {}
log "built the test binaries of $(printf '%s\n' "${sel[@]}" | cut -d' ' -f1 | sort -u | wc -l) packages in $(($(date +%s) - start)) s"

n=0 failed=0 rows=()
cache=$("$GO" env GOCACHE)/fuzz
for t in "${sel[@]}"; do
  dir=${t% *} name=${t#* }
  label="${dir#./}.$name"
  n=$((n + 1))
  logf=$LOGS/$(printf '%s' "$label" | tr / _).log
  bin=$(binary "$dir")
  t0=$(date +%s)
  # in the package's directory (its testdata/fuzz corpus), with the fuzz
  # cache go test would use
  if [ -x "$bin" ] && (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^${name}\$" -test.fuzztime="$FUZZTIME" \
    -test.fuzzminimizetime="$FUZZ_MINIMIZETIME" -test.parallel="$FUZZ_PARALLEL" -test.timeout=60m \
    -test.fuzzcachedir="$cache/$MODULE/${dir#./}") >"$logf" 2>&1; then
    result=ok
  else
    result=FAIL
    failed=$((failed + 1))
    [ -x "$bin" ] || cp "$LOGS/$(printf '%s' "$dir" | tr / _).build.log" "$logf"
  fi
  # go's progress lines: "fuzz: elapsed: 3s, execs: 1234 (411/sec), new interesting: 5 (total: 12)"
  last=$(grep -E '^fuzz: elapsed: .*execs: ' "$logf" | tail -1 || true)
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
  newi=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
  if [ "$result" = FAIL ]; then
    input=$(sed -nE 's/.*Failing input written to (.*)/\1/p' "$logf" | head -1)
    result="FAIL ${input:+$dir/$input}"
    [ -n "$input" ] || result="FAIL (see $logf)"
    grep -E -A15 -- '--- FAIL|cannot|error' "$logf" | head -30 >&2 || true
  fi
  rows+=("$(printf '%-60s %12s %8s %6ss  %s' "$label" "${execs:-0}" "${newi:-0}" "$(($(date +%s) - t0))" "$result")")
  log "$label: ${execs:-0} execs, $result"
done

printf '%-60s %12s %8s %7s  %s\n' target executions new time result
printf '%s\n' "${rows[@]}"
echo "fuzz: $n targets, $failed failed ($(($(date +%s) - start)) s, FUZZTIME=$FUZZTIME, FUZZ_PARALLEL=$FUZZ_PARALLEL)"
[ "$failed" -eq 0 ]
