#!/usr/bin/env bash
# hack/conformance.sh: the conformance table, one row per runtime handler,
# from the results the test stages recorded (conformance_record in
# hack/lib.sh, under _output/conformance/<suite>/<handler>):
#   kubelet e2e     hack/k8s (a real kube-apiserver + etcd + kubelet)
#   critest offline hack/critest.sh CRITEST_SET=offline
#   critest basic   hack/critest.sh's default set
#   cgroup v2       the e2e smoke and critest basic inside a cgroup-v2-only VM
# A cell says "-" when that suite has not run on that handler here.
#
#   hack/conformance.sh [markdown]
source "$(dirname "$0")/lib.sh"

dir=$OUT/conformance
suites=(k8s-e2e critest-offline critest-basic cgroupv2)
titles=("kubelet e2e" "critest offline" "critest basic" "cgroup v2 smoke")
handlers=$(for s in "${suites[@]}"; do ls "$dir/$s" 2>/dev/null; done | grep -v '\.tmp$' | sort -u)
[ -n "$handlers" ] || die "no results under $dir: run make test (or the stages) first"

cell() { if [ -f "$dir/$1/$2" ]; then cut -f1 "$dir/$1/$2"; else echo -; fi; }
commits=$(cat "$dir"/*/* 2>/dev/null | cut -f2 | sort -u | tr '\n' ' ')

if [ "${1:-}" = markdown ]; then
  printf '| handler |'; printf ' %s |' "${titles[@]}"; echo
  printf '|---|'; printf -- '---|%.0s' "${titles[@]}"; echo
  for h in $handlers; do
    printf '| %s |' "$h"
    for s in "${suites[@]}"; do printf ' %s |' "$(cell "$s" "$h")"; done
    echo
  done
else
  for h in $handlers; do
    echo "$h"
    for i in "${!suites[@]}"; do printf '  %-16s %s\n' "${titles[$i]}" "$(cell "${suites[$i]}" "$h")"; done
  done
fi
echo "(commits: ${commits% })"
