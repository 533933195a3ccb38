#!/usr/bin/env bash
# hack/wasm/e2e/scale.sh: N (default 200) wasm containers running at once in
# one daemon (PODS pods of N/PODS containers, created and started PAR at a
# time through crictl): all RUNNING with their first output, the daemon's
# threads and memory, then every pod removed with nothing left behind.
source "$(dirname "$0")/lib.sh"
e2e_init
N=${N:-200}
PODS=${PODS:-20}
PAR=${PAR:-8}
IMAGE=${SCALE_IMAGE:-$C_IMAGE}
CMD=${SCALE_CMD:-'["/hello.wasm","idle"]'}
per=$(( N / PODS ))

pods=()
mkpods() {
  local i
  for i in $(seq 1 "$PODS"); do run_pod "scale$i" >"$T/pod.$i"; done
}
req "$PODS pods" mkpods
for i in $(seq 1 "$PODS"); do pods+=("$(cat "$T/pod.$i")"); done

# one job per container: create + start, prints the id
one() {
  local pi=$1 j=$2 pod f id
  pod=$(cat "$T/pod.$pi")
  f=$(ctr_json "scale$pi" "c$j" "$IMAGE" "$CMD")
  id=$(crictl create "$pod" "$f" "$T/scale$pi.pod.json")
  crictl start "$id" >/dev/null
  echo "$id"
}
export -f one ctr_json crictl
export T PREFIX CRICTL_CONFIG CRICTL_TIMEOUT IMAGE CMD
startall() {
  local t0 ms
  t0=$(now_ms)
  for pi in $(seq 1 "$PODS"); do for j in $(seq 1 "$per"); do echo "$pi $j"; done; done |
    xargs -P "$PAR" -n 2 bash -c 'one "$0" "$1"' >"$T/ids"
  ms=$(( $(now_ms) - t0 ))
  expect_eq "containers started" "$(wc -l <"$T/ids")" "$N"
  echo "created and started $N containers ($PAR crictl pipelines at a time) in $ms ms"
}
req "create and start $N wasm containers" startall; show

allready() {
  local running ready
  running=$(crictl ps -q --state running | grep -cFf "$T/ids" || true)
  # return: wait_for runs this where set -e does not hold
  [ "$running" -eq "$N" ] || { fail "$running of $N running"; return 1; }
  # CRI log lines: TIME STREAM TAG TEXT
  ready=$(grep -lE '^[^ ]+ stdout F ready$' "$T"/logs/scale*/c*.log 2>/dev/null | wc -l)
  [ "$ready" -eq "$N" ] || fail "$ready of $N printed ready"
}
step "all $N RUNNING in one daemon, each printed its first line" wait_for 60 allready
step "all $N RUNNING (report)" allready

daemon_cost() {
  local pid rss threads
  pid=$(wasm_pid)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
  echo "wasm daemon with $N running containers: RSS $((rss / 1024)) MiB, $threads threads, $(ls "/proc/$pid/fd" | wc -l) fds"
  daemon_alive
}
step "one daemon process for all of them" daemon_cost; show

teardown() {
  local t0 ms id
  t0=$(now_ms)
  printf '%s\n' "${pods[@]}" | xargs -P "$PAR" -n 1 bash -c 'crictl stopp "$0" >/dev/null && crictl rmp "$0" >/dev/null'
  ms=$(( $(now_ms) - t0 ))
  echo "stopp + rmp of $PODS pods with $N containers: $ms ms"
  for id in $(cat "$T/ids"); do no_mounts_of "$id"; done
  [ -z "$(crictl ps -a -q | grep -Ff "$T/ids" || true)" ] || fail "containers left"
}
step "remove every pod: nothing left behind" teardown; show
