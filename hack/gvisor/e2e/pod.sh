#!/usr/bin/env bash
# hack/gvisor/e2e/pod.sh: a pod is one gVisor sandbox, and behaves as a pod.
#   kernel   the containers run on gVisor's kernel (dmesg, uname), not the
#            host's
#   web      busybox httpd on :80; client reaches it over 127.0.0.1; the
#            host reaches it on the pod IP (runsc --network=sandbox took the
#            CNI interface into the sentry)
#   volumes  a host directory mounted into two containers: what one writes
#            the other and the host see; a volume the pod declares with a
#            gVisor mount hint (pod annotations dev.gvisor.spec.mount.*,
#            type=tmpfs share=pod, as an emptyDir in memory): one tmpfs in the
#            sandbox shared by the containers, not written to the host; the
#            pod's /dev/shm (the sandboxer's own hint); a bind hint with
#            share=pod (runsc cannot share it) refused at runp
#   stats    crictl stats of each container (the sentry's accounting) and
#            statsp of the pod (its host cgroup: sandbox + gofers)
#   procs    the pod's host processes are runsc's alone: one runsc-sandbox
#            and a runsc-gofer per container (the root's included), in the
#            pod's cgroup; no process of the sandboxer's per pod
#   gone     rmp -f leaves no runsc process, mount or cgroup of the pod
#
#   RUNTIME_HANDLER=magnetar-gvisor [WORK=...] hack/gvisor/e2e/pod.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

VOL=$T/vol HINTED=$T/hinted
mkdir -p "$VOL" "$HINTED"
SLEEP='["sh", "-c", "exec sleep 3600"]'
HTTPD='["sh", "-c", "mkdir -p /www && echo hello-from-gvisor > /www/index.html && exec httpd -f -p 80 -h /www"]'
MOUNTS="\"mounts\": [ { \"container_path\": \"/vol\", \"host_path\": \"$VOL\" }, { \"container_path\": \"/hinted\", \"host_path\": \"$HINTED\" } ]"

# the pod, with a mount hint for $HINTED in its annotations
run_hinted_pod() {
  local f
  f=$(pod_json gv)
  jq --arg src "$HINTED" '.annotations = {"dev.gvisor.spec.mount.hinted.source": $src,
    "dev.gvisor.spec.mount.hinted.type": "tmpfs", "dev.gvisor.spec.mount.hinted.share": "pod"}' "$f" > "$f.tmp"
  mv "$f.tmp" "$f"
  crictl runp -r "$RUNTIME_HANDLER" "$f"
}
all_running() {
  local id
  for id in "$WEB" "$A" "$B"; do wait_ctr_state "$id" CONTAINER_RUNNING 30; done
}
gvisor_kernel() {
  expect_match "dmesg in the container" "$(exec_out "$A" dmesg)" "gVisor"
  local k
  k=$(exec_out "$A" uname -r | tr -d '\r\n')
  [ "$k" != "$(uname -r)" ] || fail "the container reports the host's kernel $k"
}
hints_described() {
  expect_match "mount hints of the pod (inspectp)" "$(crictl inspectp "$POD")" 'hinted,magnetar-shm'
}
pod_ip() { crictl inspectp -o go-template --template '{{.status.network.ip}}' "$POD"; }
localhost_http() {
  wait_for 10 crictl exec -s "$A" timeout 2 wget -q -O /tmp/page http://127.0.0.1:80/
  expect_eq "page over 127.0.0.1" "$(exec_out "$A" cat /tmp/page)" hello-from-gvisor
}
host_get() { timeout 5 busybox wget -q -O - "http://$IP/"; }
host_http() { wait_for 20 host_get; expect_eq "host -> pod IP" "$(host_get)" hello-from-gvisor; }
eth0_ip() { expect_match "eth0 in the sandbox" "$(exec_out "$B" ip -4 addr show eth0)" "inet ${IP//./\\.}/"; }
shared_volume() {
  exec_out "$A" sh -c 'echo from-a > /vol/a.txt' >/dev/null
  expect_eq "b reads a's file" "$(exec_out "$B" cat /vol/a.txt)" from-a
  expect_eq "the host reads a's file" "$(cat "$VOL/a.txt")" from-a
  echo from-host > "$VOL/h.txt"
  expect_eq "b reads the host's file" "$(exec_out "$B" cat /vol/h.txt)" from-host
}
hinted_volume() {
  exec_out "$A" sh -c 'echo hinted-from-a > /hinted/x.txt' >/dev/null
  expect_eq "b reads a's file in the hinted volume" "$(exec_out "$B" cat /hinted/x.txt)" hinted-from-a
  exec_out "$B" sh -c 'echo hinted-from-b >> /hinted/x.txt' >/dev/null
  expect_eq "a reads b's append" "$(exec_out "$A" tail -1 /hinted/x.txt)" hinted-from-b
  [ ! -e "$HINTED/x.txt" ] || fail "the hinted tmpfs volume was written to the host"
}
# a bind volume hinted share=pod: refused, naming the hint, leaving nothing
bind_hint_refused() {
  local f out
  f=$(pod_json gvbad)
  jq --arg src "$HINTED" '.annotations = {"dev.gvisor.spec.mount.v.source": $src,
    "dev.gvisor.spec.mount.v.type": "bind", "dev.gvisor.spec.mount.v.share": "pod"}' "$f" > "$f.tmp"
  mv "$f.tmp" "$f"
  if out=$(crictl runp -r "$RUNTIME_HANDLER" "$f" 2>&1); then fail "runp with a bind share=pod hint succeeded"; fi
  expect_match "the error" "$out" 'type bind with share pod'
  expect_eq "pods left of the refused runp" "$(crictl pods -q --name gvbad | wc -l)" 0
}
shm_shared() {
  exec_out "$A" sh -c 'echo shm-from-a > /dev/shm/x' >/dev/null
  expect_eq "b reads a's /dev/shm file" "$(exec_out "$B" cat /dev/shm/x)" shm-from-a
  expect_eq "/dev/shm is a tmpfs" "$(exec_out "$B" sh -c "awk '\$2 == \"/dev/shm\" {print \$3}' /proc/mounts")" tmpfs
}
ctr_stats() {
  local id js mem
  for id in "$WEB" "$A" "$B"; do
    js=$(crictl stats -o json --id "$id")
    mem=$(jq -r '.stats[0].memory.workingSetBytes.value // 0' <<<"$js")
    [ "$mem" -gt 0 ] || fail "container $id: memory working set $mem"
  done
}
pod_stats() {
  local js mem
  js=$(crictl statsp -o json --id "$POD")
  mem=$(jq -r '.stats[0].linux.memory.workingSetBytes.value // 0' <<<"$js")
  [ "$mem" -gt $((8 << 20)) ] || fail "pod memory working set $mem (want the sandbox's, > 8 MiB): $js"
}
# the pod's runsc root and the processes naming it
pod_root() { echo "$WORK/lib/$RUNTIME_HANDLER/sandboxes/$POD/runsc"; }
pod_procs() { pgrep -f -- "--root=$(pod_root)( |$)" || true; }
procs_are_runscs() {
  local p name n_sb=0 n_gofer=0 cg
  for p in $(pod_procs); do
    name=$(tr '\0' ' ' < "/proc/$p/cmdline" | awk '{print $1}')
    case "$name" in
    runsc-sandbox) n_sb=$((n_sb + 1)) ;;
    runsc-gofer) n_gofer=$((n_gofer + 1)) ;;
    *) fail "process $p of the pod is $name" ;;
    esac
  done
  expect_eq "runsc-sandbox processes of the pod" "$n_sb" 1
  expect_eq "runsc-gofer processes of the pod (root + 3 containers)" "$n_gofer" 4
  # everything in the pod's cgroup is runsc's: those, and the sentry's
  # systrap stubs (forked by runsc-sandbox, its command line)
  for p in $(for d in $(cgroup_parent_dirs); do [ -d "$d/$POD" ] && find "$d/$POD" -name cgroup.procs -exec cat {} + ; done 2>/dev/null | sort -u); do
    name=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | awk '{print $1}')
    case "$name" in runsc-sandbox|runsc-gofer|'') ;; *) fail "process $p in the pod's cgroup is $name" ;; esac
  done
  # and the sandboxer daemon has no child but runsc's and its keeper (an
  # exited helper of runsc's is reaped within two of its sweeps, 20 s)
  wait_for 25 no_other_children || fail "children of the sandboxer that are not runsc's: $(other_children)"
}
other_children() {
  ps -o pid=,args= --ppid "$(cat "$WORK/run/$RUNTIME_HANDLER.pid")" |
    awk '$2 !~ /^runsc-(sandbox|gofer)$/ && $3 != "__magnetar_task_keeper"' || true
}
no_other_children() { [ -z "$(other_children)" ]; }
rmp_gone() {
  local root
  root=$(pod_root)
  crictl rmp -f "$POD" >/dev/null
  wait_for 10 sh -c "! pgrep -f -- '--root=$root( |\$)' >/dev/null"
  expect_eq "mounts of the pod" "$(grep -c -- "$WORK/lib/$RUNTIME_HANDLER/sandboxes/$POD" /proc/mounts || true)" 0
  local d
  for d in $(cgroup_parent_dirs); do [ ! -d "$d/$POD" ] || fail "cgroup $d/$POD left"; done
  [ ! -d "$root" ] || fail "runsc root $root left"
}

req  "runp (with a mount hint)" run_hinted_pod; POD=$LAST
req  "start web" start_ctr "$POD" gv web "$BUSYBOX_IMAGE" "$HTTPD"; WEB=$LAST
req  "start a (volumes)" start_ctr "$POD" gv a "$BUSYBOX_IMAGE" "$SLEEP" "$MOUNTS"; A=$LAST
req  "start b (volumes)" start_ctr "$POD" gv b "$BUSYBOX_IMAGE" "$SLEEP" "$MOUNTS"; B=$LAST
req  "3 containers RUNNING" all_running
req  "pod IP" pod_ip; IP=$LAST
step "kernel: gVisor's, not the host's" gvisor_kernel
step "inspectp: the pod's mount hints" hints_described
step "net: a reaches web over 127.0.0.1" localhost_http
step "net: eth0 in the sandbox has the pod IP" eth0_ip
step "net: the host reaches the pod IP" host_http
step "volume: a host directory shared by a, b and the host" shared_volume
step "volume: a hinted (tmpfs, share=pod) volume shared by a and b" hinted_volume
step "volume: a bind hint with share=pod refused at runp" bind_hint_refused
step "volume: /dev/shm shared" shm_shared
step "stats: each container" ctr_stats
step "statsp: the pod's cgroup" pod_stats
step "processes: runsc's only (1 sandbox, 4 gofers), none of ours" procs_are_runscs
step "rmp -f: no process, mount, cgroup or runsc state left" rmp_gone
