#!/usr/bin/env bash
# hack/k8s/e2e.sh: one runtime handler on the running Kubernetes node
# (hack/k8s/node.sh start) through kubectl and the kubelet's own API, in a
# namespace of its own (e2e-HANDLER). Its pods run the handler's workload
# (K8S_HANDLER_TABLE in hack/k8s/lib.sh: busybox for linux, the WASI test
# module for wasm) with runtimeClassName HANDLER.
#
#   [RUNTIME_HANDLER=magnetar-runc] hack/k8s/e2e.sh [pods|removed]
#
# pods (default):
#   - a 2-container pod: an emptyDir both write and read, resource requests
#     and limits (seen in the container), exec readiness and liveness
#     probes (readiness follows a file, a failed liveness probe restarts the
#     container), a ConfigMap and a Secret volume, a projected
#     service-account token (accepted by the API server's TokenReview);
#     kubectl logs (and -f, and --previous), exec (stdin, exit code), exec
#     -it, attach, port-forward, cp;
#   - a pod whose containers exit 3 (restarted per restartPolicy OnFailure,
#     the exit code in lastState), exit 0 (Completed, not restarted) and
#     outgrow their memory limit (OOMKilled);
#   - pod and container CPU and memory in the kubelet's summary API
#     (/stats/summary: CRI stats, i.e. the sandboxer's Controller.Metrics);
#   - a Deployment scaled to the handler's REPLICAS, every pod on the handler;
#   - delete: the pods go away and nothing of them stays on the host
#     (processes, cgroups, mounts, volumes, IP address); their ids are kept
#     in $WORK/k8s/deleted-HANDLER for the second phase.
# removed: once the kubelet's garbage collection (every minute) has removed
#   the containers and sandboxes of the deleted pods: none is left in
#   containerd nor in the sandboxer's state, and their logs are gone.
#
# A feature the handler cannot do (K8S_CANNOT) is still tried, and counted
# as skipped with the reason; should it work, the step fails (the
# expectation is stale). Ends with "e2e: N passed, M failed[, K skipped]".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/hack/e2e/lib.sh"
PHASE=${1:-pods}
SUITE=k8s-$PHASE
E2E_LOGS="$WORK/logs/kubelet.log"
e2e_init
command -v script >/dev/null || { echo "FAIL $SUITE: util-linux 'script' missing (apt-get install bsdutils)"; exit 1; }

H=$RUNTIME_HANDLER
NS=e2e-$H
WORKLOAD=$(k8s_handler_field "$H" 2) || { echo "FAIL $SUITE: $H has no line in K8S_HANDLER_TABLE (hack/k8s/lib.sh)"; E2E_FAIL=1; exit 1; }
REPLICAS=$(k8s_handler_field "$H" 3)
DELETED=$KS/deleted-$H
KC="$PREFIX/bin/kubectl --kubeconfig $KS/admin.kubeconfig"
k() { kubectl -n "$NS" "$@"; }

# --- the workload: what the pods run --------------------------------------------------
case "$WORKLOAD" in
linux)
  IMAGE=$BUSYBOX_IMAGE
  CAT=(cat)
  RM=(rm)
  WRITE=(sh -c 'printf "%s\n" "$2" > "$1"' write)
  EXIT=(sh -c 'echo "exiting with $1"; exit "$1"' exit)
  STDIN=(sh -c 'while read -r l; do echo "stdin: $l"; done; echo "stdin: EOF"')
  WRITER=(sh -c 'echo "shared by the writer" > /scratch/shared.txt; echo ready > /scratch/ready; echo alive > /scratch/alive
httpd -p 8080 -h /scratch
i=0; while :; do echo "tick $i"; i=$((i + 1)); sleep 1; done')
  READER=(sh -c 'while read -r l; do echo "stdin: $l"; done; echo "stdin: EOF"; exec sleep 86400')
  OOM=(sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done')
  OOM_LIMIT=32Mi
  IDLE=(sleep 86400)
  ;;
wasm)
  IMAGE=localhost/magnetar/wasm-go:v1
  CAT=(/guest.wasm cat)
  RM=(/guest.wasm rm)
  WRITE=(/guest.wasm write)
  EXIT=(/guest.wasm exit)
  STDIN=(/guest.wasm stdin)
  WRITER=(/guest.wasm tick /scratch/shared.txt "shared by the writer" /scratch/ready ready /scratch/alive alive)
  READER=(/guest.wasm stdin)
  OOM=(/guest.wasm grow 256)
  OOM_LIMIT=64Mi
  IDLE=(/guest.wasm idle)
  ;;
*) echo "FAIL $SUITE: $H: unknown workload '$WORKLOAD' (linux or wasm)"; E2E_FAIL=1; exit 1 ;;
esac
show() { if [ -n "$LAST" ]; then sed 's/^/     /' <<<"$LAST"; fi; }
# json WORD...: a JSON array of the words (YAML takes JSON); not jq --args,
# which takes a word such as -c for one of its own options
json() { local a; for a in "$@"; do jq -n --arg a "$a" '$a'; done | jq -cs .; }

# check FEATURE NAME CMD...: a step; if the handler cannot do FEATURE
# (K8S_CANNOT) CMD must fail, and the step counts as skipped with the reason
check() {
  local feature=$1 name=$2 reason rc
  shift 2
  if ! reason=$(k8s_cannot "$H" "$feature"); then step "$name" "$@"; return 0; fi
  set +e
  ( set -e; "$@" ) >"$T/.cannot" 2>&1 </dev/null
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    E2E_FAIL=$((E2E_FAIL + 1))
    printf 'FAIL %s: %s [handler %s]: works, but K8S_CANNOT says it cannot (%s): drop that line (hack/k8s/lib.sh)\n' \
      "$SUITE" "$name" "$H" "$reason"
  else
    skip "$name" "$reason"
    echo "     (tried: $(tail -n 1 "$T/.cannot" | cut -c1-200))"
  fi
}

# in_pty CMD INPUT: run CMD (a shell string) in a pseudo-terminal, typing INPUT
in_pty() { timeout -k 5 60 script -qec "$1" /dev/null <<<"$2"; }

# stream OUT SECONDS CMD...: run CMD in the background (output to OUT, stdin
# from the FIFO $T/in.fifo, kept open on fd 7), for at most SECONDS; sets STREAM_PID
stream() {
  local out=$1 secs=$2
  shift 2
  rm -f "$T/in.fifo"; mkfifo "$T/in.fifo"
  timeout -k 2 "$secs" "$@" <"$T/in.fifo" >"$out" 2>&1 &
  STREAM_PID=$!
  exec 7>"$T/in.fifo"
}
stream_end() { exec 7>&-; kill "$STREAM_PID" 2>/dev/null || true; wait "$STREAM_PID" 2>/dev/null || true; }

# field POD JSONPATH
field() { k get pod "$1" -o jsonpath="$2"; }
# cstatus POD CONTAINER JSONPATH-SUFFIX: a field of a container's status
cstatus() { field "$1" "{.status.containerStatuses[?(@.name==\"$2\")]$3}"; }
pod_ready() { [ "$(field "$1" '{.status.conditions[?(@.type=="Ready")].status}')" = "$2" ]; }

# =================================================================================
if [ "$PHASE" = removed ]; then
  [ -f "$DELETED" ] || { echo "FAIL $SUITE: no $DELETED: the pods phase did not get to delete"; E2E_FAIL=1; exit 1; }
  # a failed or timed-out crictl call says nothing: only an answer without the
  # id counts as gone
  known_to_containerd() { # pods|ps ID
    local out
    if [ "$1" = pods ]; then out=$(crictl pods -q --id "$2"); else out=$(crictl ps -a -q --id "$2"); fi || return 0
    [ -n "$out" ]
  }
  gone_from_containerd() {
    local sb
    for sb in $(awk '$1 == "sandbox" {print $2}' "$DELETED"); do
      # return: wait_for runs this where set -e does not hold, and a loop's
      # status is its last round's
      ! known_to_containerd pods "$sb" || { fail "sandbox $sb still known to containerd"; return 1; }
    done
  }
  # trail ID: the last words of the sandboxer and containerd on ID (CI
  # keeps only a failure's own lines: they must say what happened)
  trail() {
    local f
    for f in "$WORK/logs/$(daemon_handler "$H").log" "$WORK/logs/containerd.log"; do
      printf '\n  last lines of %s naming it:\n' "${f##*/}"
      grep -F -- "$1" "$f" 2>/dev/null | grep -v 'level=debug msg="metrics failed"' | tail -n 8 | cut -c1-320 | sed 's/^/    /'
    done
  }
  removed() {
    local t0=$SECONDS
    wait_for 150 gone_from_containerd
    echo "the kubelet removed the sandboxes of the deleted pods within $((SECONDS - t0)) s of this check"
    local sb c d=$WORK/lib/$(daemon_handler "$H")
    for sb in $(awk '$1 == "sandbox" {print $2}' "$DELETED"); do
      # the sandboxer's own record and directory of the pod
      if [ -d "$d" ]; then
        ! grep -rlsF -- "$sb" "$d" >/dev/null || fail "the sandboxer's dir $d still names $sb: $(grep -rlsF -- "$sb" "$d" | head -3) (crictl pods --id: $(crictl pods --id "$sb" 2>&1 | tail -2 | tr '\n' ' '))$(trail "$sb")"
      fi
      ! grep -qF -- "$sb" /proc/mounts || fail "a mount still names $sb"
      [ -z "$(find "$WORK/state" "$WORK/root" -maxdepth 6 -name "*$sb*" 2>/dev/null | head -1)" ] ||
        fail "containerd's dirs still hold $sb: $(find "$WORK/state" "$WORK/root" -maxdepth 6 -name "*$sb*" | head -3)"
    done
    for c in $(awk '$1 == "container" {print $2}' "$DELETED"); do
      ! known_to_containerd ps "$c" || fail "container $c still known to containerd"
      ! grep -qF -- "$c" /proc/mounts || fail "a mount still names container $c"
    done
    # the logs go with the containers, in the kubelet's next garbage
    # collection (once a minute) after their sandboxes: when those were
    # gone before this check began, that collection may still be to come
    logs_gone() {
      local uid
      for uid in $(awk '$1 == "pod" {print $2}' "$DELETED"); do
        [ -z "$(find "$KS/pod-logs" -maxdepth 1 -name "*_$uid" | head -1)" ] || { fail "log dir of pod $uid left"; return 1; }
      done
    }
    wait_for 90 logs_gone || logs_gone
    ! ls /var/log/containers/ 2>/dev/null | grep -q "_${NS}_" || fail "container log links of $NS left in /var/log/containers"
  }
  step "sandboxes and containers of the deleted pods removed, nothing of them in containerd or the sandboxer" removed
  show
  rm -f "$DELETED"
  exit 0
fi

# =================================================================================
# the handler's namespace (the controllers give it its default ServiceAccount)
setup() {
  kubectl get runtimeclass "$H" -o jsonpath='{.handler}' | grep -qx "$H" ||
    fail "RuntimeClass $H (deploy/kubernetes/runtimeclass-$H.yaml) missing or not for handler $H"
  kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  kubectl create namespace "$NS" >/dev/null
  wait_for 60 k get serviceaccount/default configmap/kube-root-ca.crt
}
req "RuntimeClass $H, namespace $NS" setup

RES='{requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: 500m, memory: 128Mi}}'
cat > "$T/main.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: "hello from a ConfigMap"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: "s3cr3t value"}
---
apiVersion: v1
kind: Pod
metadata: {name: main, labels: {app: main}}
spec:
  runtimeClassName: $H
  terminationGracePeriodSeconds: 5
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - name: token
    projected: {sources: [{serviceAccountToken: {path: token, audience: magnetar-e2e, expirationSeconds: 3600}}]}
  containers:
  - name: writer
    image: $IMAGE
    imagePullPolicy: Never
    command: $(json "${WRITER[@]}")
    ports: [{containerPort: 8080}]
    resources: $RES
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
    - {name: token, mountPath: /var/run/secrets/magnetar}
    readinessProbe: {exec: {command: $(json "${CAT[@]}" /scratch/ready)}, periodSeconds: 1, failureThreshold: 1, timeoutSeconds: 10}
    livenessProbe: {exec: {command: $(json "${CAT[@]}" /scratch/alive)}, periodSeconds: 2, failureThreshold: 1, timeoutSeconds: 10, terminationGracePeriodSeconds: 1}
  - name: reader
    image: $IMAGE
    imagePullPolicy: Never
    command: $(json "${READER[@]}")
    stdin: true
    resources: $RES
    volumeMounts: [{name: scratch, mountPath: /scratch}]
EOF
cat > "$T/failing.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: failing}
spec:
  runtimeClassName: $H
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - {name: crash, image: $IMAGE, imagePullPolicy: Never, command: $(json "${EXIT[@]}" 3)}
  - {name: done, image: $IMAGE, imagePullPolicy: Never, command: $(json "${EXIT[@]}" 0)}
EOF
# a pod of its own: on a handler that bounds memory per pod sandbox (gVisor)
# outgrowing the limit ends the whole pod, which must not disturb the above
cat > "$T/oom.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  runtimeClassName: $H
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - name: oom
    image: $IMAGE
    imagePullPolicy: Never
    command: $(json "${OOM[@]}")
    resources: {limits: {memory: $OOM_LIMIT}}
EOF

# --- the 2-container pod ----------------------------------------------------------
main_ready() {
  k apply -f "$T/main.yaml" >/dev/null
  local t0=$SECONDS
  k wait --for=condition=Ready pod/main --timeout=180s >/dev/null
  echo "pod main Ready $((SECONDS - t0)) s after kubectl apply"
  local sb
  sb=$(crictl pods -q --label "io.kubernetes.pod.uid=$(field main '{.metadata.uid}')" --state ready)
  [ -n "$sb" ] || fail "no ready sandbox of pod main in containerd"
  expect_eq "runtime handler of the pod's sandbox" "$(crictl inspectp -o go-template --template '{{.status.runtimeHandler}}' "$sb")" "$H"
}
req "2-container pod (emptyDir, ConfigMap, Secret, projected token, probes, limits) Ready on handler $H" main_ready; show

emptydir() {
  expect_eq "the writer's file, read in the reader" "$(k exec main -c reader -- "${CAT[@]}" /scratch/shared.txt)" "shared by the writer"
  k exec main -c reader -- "${WRITE[@]}" /scratch/from-reader.txt "written by the reader" >/dev/null
  expect_eq "the reader's file, read in the writer" "$(k exec main -c writer -- "${CAT[@]}" /scratch/from-reader.txt)" "written by the reader"
}
check emptydir "emptyDir shared by the two containers, both ways" emptydir

check configmap "ConfigMap volume" eval 'expect_eq "greeting" "$(k exec main -c writer -- "${CAT[@]}" /etc/cfg/greeting)" "hello from a ConfigMap"'
check secret "Secret volume" eval 'expect_eq "password" "$(k exec main -c writer -- "${CAT[@]}" /etc/sec/password)" "s3cr3t value"'

token() {
  local tok user
  tok=$(k exec main -c writer -- "${CAT[@]}" /var/run/secrets/magnetar/token)
  # the API server vouches for it (audience magnetar-e2e)
  user=$(jq -n --arg t "$tok" '{apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: {token: $t, audiences: ["magnetar-e2e"]}}' |
    kubectl create -f - -o jsonpath='{.status.authenticated} {.status.user.username}')
  expect_eq "TokenReview of the projected token" "$user" "true system:serviceaccount:$NS:default"
  # and the automounted service account volume (projected: token, ca.crt, namespace)
  expect_eq "namespace file" "$(k exec main -c reader -- "${CAT[@]}" /var/run/secrets/kubernetes.io/serviceaccount/namespace)" "$NS"
  expect_eq "ca.crt" "$(k exec main -c reader -- "${CAT[@]}" /var/run/secrets/kubernetes.io/serviceaccount/ca.crt | sha256sum)" "$(sha256sum < "$KS/pki/ca.crt")"
}
check token "projected service-account token accepted by the API server; automounted ServiceAccount volume" token

limits() {
  if [ "$WORKLOAD" = wasm ]; then
    # no cgroup of its own: the limit bounds the module's linear memory
    ! k exec main -c writer -- /guest.wasm grow 200 >"$T/grow.out" 2>&1 || fail "an exec grew 200 MiB past the 128 MiB limit"
    expect_match "8 MiB under the limit" "$(k exec main -c writer -- /guest.wasm grow 8)" '^grew 8 MiB'
    return 0
  fi
  local mem cpu
  mem=$(k exec main -c writer -- sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')
  expect_eq "memory limit in the container" "$mem" 134217728
  cpu=$(k exec main -c writer -- sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d" " -f1 /sys/fs/cgroup/cpu.max')
  expect_eq "CPU quota in the container (500m of a 100 ms period)" "$cpu" 50000
}
check limits "resource limits seen in the container" limits

readiness() {
  k exec main -c reader -- "${RM[@]}" /scratch/ready >/dev/null
  wait_for 30 pod_ready main False
  k exec main -c reader -- "${WRITE[@]}" /scratch/ready ready >/dev/null
  wait_for 30 pod_ready main True
}
check probes "exec readiness probe: NotReady when its file goes, Ready when it is back" readiness

logs() {
  local out
  out=$(k logs main -c writer)
  expect_match "writer log" "$out" '^tick 0$'
  expect_match "writer log" "$out" '^tick 1$'
}
check logs "kubectl logs" logs

logs_follow() {
  local n
  n=$(k logs main -c writer --tail=1 | sed -n 's/^tick //p')
  [ -n "$n" ] || fail "no tick in the log"
  stream "$T/follow.out" 30 $KC -n "$NS" logs -f main -c writer --tail=1
  if ! wait_for 20 grep -qx "tick $((n + 2))" "$T/follow.out"; then stream_end; cat "$T/follow.out" >&2; return 1; fi
  stream_end
}
check logs-follow "kubectl logs -f: new lines arrive" logs_follow

exec_case() {
  local rc=0 out
  out=$(printf 'one\ntwo\n' | $KC -n "$NS" exec -i main -c reader -- "${STDIN[@]}")
  expect_match "stdin line 1" "$out" '^stdin: one$'
  expect_match "EOF" "$out" '^stdin: EOF$'
  k exec main -c reader -- "${EXIT[@]}" 3 >/dev/null 2>&1 || rc=$?
  expect_eq "exit code of kubectl exec" "$rc" 3
}
check exec "kubectl exec: stdin, output, exit code" exec_case

exec_tty() {
  local out rc=0
  if [ "$WORKLOAD" = wasm ]; then
    out=$(in_pty "$KC -n $NS exec -it main -c writer -- /guest.wasm hello" "" 2>&1) || rc=$?
    expect_match "output" "$out" 'hello from wasm'
    return "$rc"
  fi
  out=$(in_pty "$KC -n $NS exec -it main -c writer -- sh" '[ -t 0 ] && [ -t 1 ] && echo stdio-is-a-terminal; echo $((6*7)); exit 4' 2>&1) || rc=$?
  expect_match "a terminal" "$out" '^stdio-is-a-terminal'
  expect_match "typed command's output" "$out" '^42'
  expect_eq "exit code" "$rc" 4
}
check exec-tty "kubectl exec -it: a terminal, typed input, exit code" exec_tty
tty_name() {
  expect_match "the terminal's name" "$(in_pty "$KC -n $NS exec -it main -c writer -- sh" 'tty; exit 0' 2>&1)" '/dev/pts/[0-9]+'
}
check tty-name "kubectl exec -it: the terminal is one of the container's /dev/pts" tty_name

attach() {
  stream "$T/attach.out" 30 $KC -n "$NS" attach -i main -c reader
  sleep 1
  echo "hello attach" >&7
  if ! wait_for 20 grep -q '^stdin: hello attach' "$T/attach.out"; then stream_end; cat "$T/attach.out" >&2; return 1; fi
  stream_end
  expect_match "the reader's log" "$(k logs main -c reader)" '^stdin: hello attach'
}
check attach "kubectl attach -i: stdin to the running container, its output back" attach

port_forward() {
  local port
  stream "$T/pf.out" 60 $KC -n "$NS" port-forward pod/main :8080
  if ! wait_for 20 grep -q 'Forwarding from 127.0.0.1:' "$T/pf.out"; then stream_end; cat "$T/pf.out" >&2; return 1; fi
  port=$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$T/pf.out" | head -1)
  local body
  body=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/shared.txt") || { stream_end; fail "GET through the forward failed: $(tail -3 "$T/pf.out")"; }
  stream_end
  expect_eq "file served in the pod" "$body" "shared by the writer"
}
check port-forward "kubectl port-forward to a server in the pod" port_forward

cp_case() {
  echo "copied $(date +%s%N)" > "$T/cp.src"
  k cp "$T/cp.src" "main:/scratch/cp.txt" -c reader >/dev/null
  k cp "main:/scratch/cp.txt" "$T/cp.back" -c writer >/dev/null
  expect_eq "copied in and out" "$(cat "$T/cp.back")" "$(cat "$T/cp.src")"
}
check cp "kubectl cp into one container and out of the other" cp_case

liveness() {
  local before
  before=$(cstatus main writer '.restartCount')
  k exec main -c reader -- "${RM[@]}" /scratch/alive >/dev/null
  wait_for 60 sh -c "[ \"\$($KC -n $NS get pod main -o jsonpath='{.status.containerStatuses[?(@.name==\"writer\")].restartCount}')\" -gt $before ]"
  k wait --for=condition=Ready pod/main --timeout=60s >/dev/null
  expect_match "events" "$(k get events --field-selector involvedObject.name=main -o jsonpath='{.items[*].message}')" 'Liveness probe failed'
  expect_match "log of the killed container (logs --previous)" "$(k logs main -c writer --previous)" '^tick 0$'
}
check probes "exec liveness probe: a failure restarts the container, the pod is Ready again" liveness

# --- exit codes, restart policy, OOM ---------------------------------------------------
k apply -f "$T/failing.yaml" >/dev/null
k apply -f "$T/oom.yaml" >/dev/null
restart() {
  wait_for 90 sh -c "[ \"\$($KC -n $NS get pod failing -o jsonpath='{.status.containerStatuses[?(@.name==\"crash\")].restartCount}')\" -ge 2 ]"
  expect_eq "exit code the kubelet saw" "$(cstatus failing crash '.lastState.terminated.exitCode')" 3
  expect_eq "reason" "$(cstatus failing crash '.lastState.terminated.reason')" Error
  wait_for 30 sh -c "[ \"\$($KC -n $NS get pod failing -o jsonpath='{.status.containerStatuses[?(@.name==\"done\")].state.terminated.reason}')\" = Completed ]"
  expect_eq "exit 0 under OnFailure: not restarted" "$(cstatus failing done '.restartCount')" 0
  expect_eq "exit code of done" "$(cstatus failing done '.state.terminated.exitCode')" 0
}
check restart "exit 3 restarted per restartPolicy OnFailure with its exit code, exit 0 not" restart

oom() {
  local reason
  oom_reason() {
    reason=$(cstatus oom oom '.lastState.terminated.reason')
    [ -n "$reason" ] || reason=$(cstatus oom oom '.state.terminated.reason')
    [ -n "$reason" ]
  }
  wait_for 90 oom_reason
  oom_reason
  expect_eq "reason" "$reason" OOMKilled
  local code
  code=$(cstatus oom oom '.lastState.terminated.exitCode')
  [ -n "$code" ] || code=$(cstatus oom oom '.state.terminated.exitCode')
  expect_eq "exit code of the OOM-killed container" "$code" 137
}
check oom "a container outgrowing its memory limit: OOMKilled, exit code 137" oom; show

# --- stats ---------------------------------------------------------------------------
summary() {
  curl -fsS --max-time 20 --cacert "$KS/kubelet/pki/kubelet.crt" --resolve "localhost:$K8S_KUBELET_PORT:127.0.0.1" \
    --cert "$KS/pki/admin.crt" --key "$KS/pki/admin.key" "https://localhost:$K8S_KUBELET_PORT/stats/summary"
}
pod_stats_ok() {
  summary > "$T/summary.json"
  # the pod's CPU and memory; each container's memory and a CPU figure (the
  # reader waits on its stdin: an application kernel that accounts CPU
  # coarsely, gVisor's sentry, may rightly say 0 for it), and CPU used by
  # at least one of them
  jq -e --arg ns "$NS" '.pods[] | select(.podRef.namespace == $ns and .podRef.name == "main")
    | (.cpu.usageCoreNanoSeconds // 0) > 0 and (.memory.workingSetBytes // 0) > 0
      and ([.containers[] | select(.cpu.usageCoreNanoSeconds != null and (.memory.workingSetBytes // 0) > 0) | .name] | sort == ["reader", "writer"])
      and ([.containers[] | select((.cpu.usageCoreNanoSeconds // 0) > 0)] | length > 0)' \
    "$T/summary.json" >/dev/null
}
stats() {
  wait_for 60 pod_stats_ok || { jq --arg ns "$NS" '.pods[] | select(.podRef.namespace == $ns and .podRef.name == "main") | {cpu, memory, containers: [.containers[] | {name, cpu, memory}]}' "$T/summary.json" >&2; return 1; }
  jq -r --arg ns "$NS" '.pods[] | select(.podRef.namespace == $ns and .podRef.name == "main") |
    "pod main: cpu \(.cpu.usageCoreNanoSeconds) ns, memory working set \(.memory.workingSetBytes) bytes; " +
    ([.containers[] | "\(.name): \(.cpu.usageCoreNanoSeconds) ns, \(.memory.workingSetBytes) bytes"] | join("; "))' "$T/summary.json"
}
check stats "kubelet summary API: CPU and memory of the pod and of each container" stats; show

# --- a Deployment ------------------------------------------------------------------------
deployment() {
  cat > "$T/deploy.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 1
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      runtimeClassName: $H
      terminationGracePeriodSeconds: 1
      containers:
      - name: idle
        image: $IMAGE
        imagePullPolicy: Never
        command: $(json "${IDLE[@]}")
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
EOF
  local t0=$SECONDS
  k apply -f "$T/deploy.yaml" >/dev/null
  # kubectl's own bound (KUBECTL_TIMEOUT) past each rollout's
  KUBECTL_TIMEOUT=200 k rollout status deployment/idle --timeout=180s >/dev/null
  k scale deployment/idle --replicas="$REPLICAS" >/dev/null
  KUBECTL_TIMEOUT=320 k rollout status deployment/idle --timeout=300s >/dev/null
  expect_eq "available replicas" "$(k get deployment idle -o jsonpath='{.status.availableReplicas}')" "$REPLICAS"
  local handlers
  handlers=$(crictl pods --namespace "$NS" --label app=idle --state ready -o json | jq -r '[.items[].runtimeHandler] | unique | join(" ")')
  expect_eq "runtime handler of the replicas' sandboxes" "$handlers" "$H"
  echo "deployment: $REPLICAS replicas available $((SECONDS - t0)) s after kubectl apply"
}
if [ "${REPLICAS:-0}" -gt 0 ]; then check deployment "a Deployment (scheduler, controllers) scaled to $REPLICAS replicas on $H" deployment; show; fi

# --- delete ----------------------------------------------------------------------------
delete() {
  local uids uid sb c ip d
  : > "$DELETED.tmp"
  for uid in $(k get pods -o jsonpath='{.items[*].metadata.uid}'); do
    echo "pod $uid" >> "$DELETED.tmp"
    for sb in $(crictl pods -q --label "io.kubernetes.pod.uid=$uid"); do echo "sandbox $sb" >> "$DELETED.tmp"; done
    for c in $(crictl ps -a -q --label "io.kubernetes.pod.uid=$uid"); do echo "container $c" >> "$DELETED.tmp"; done
  done
  for ip in $(k get pods -o jsonpath='{.items[*].status.podIP}'); do echo "ip $ip" >> "$DELETED.tmp"; done
  mv "$DELETED.tmp" "$DELETED"
  local t0=$SECONDS
  kubectl delete namespace "$NS" --wait=true --timeout=180s >/dev/null
  echo "namespace $NS and its pods deleted in $((SECONDS - t0)) s"
  # what the kubelet and the sandboxer stop at once
  left() {
    local what=
    for uid in $(awk '$1 == "pod" {print $2}' "$DELETED"); do
      [ ! -e "$KS/kubelet/pods/$uid" ] || what+=" kubelet dir of pod $uid;"
      ! grep -qF -- "$uid" /proc/mounts || what+=" mounts of pod $uid;"
      for d in $(cgroup_parent_dirs); do
        [ -z "$(find "$d" -maxdepth 4 -type d -name "pod$uid" | head -1)" ] || what+=" cgroup of pod $uid in $d;"
      done
      [ -z "$(pgrep -f -- "$uid" || true)" ] || what+=" processes naming pod $uid;"
    done
    for sb in $(awk '$1 == "sandbox" {print $2}' "$DELETED"); do
      [ -z "$(pgrep -f -- "$sb" || true)" ] || what+=" processes naming sandbox $sb;"
      [ "$(crictl inspectp -o go-template --template '{{.status.state}}' "$sb" 2>/dev/null || echo gone)" != SANDBOX_READY ] ||
        what+=" sandbox $sb still ready;"
    done
    for c in $(awk '$1 == "container" {print $2}' "$DELETED"); do
      ! grep -qF -- "$c/rootfs" /proc/mounts || what+=" rootfs of container $c;"
    done
    for ip in $(awk '$1 == "ip" {print $2}' "$DELETED"); do
      [ -z "$(find "$WORK/cni-ipam" -name "$ip" 2>/dev/null | head -1)" ] || what+=" address $ip still allocated;"
    done
    # no process left in the pod cgroups (a container the sandboxer lost)
    for d in $(cgroup_parent_dirs); do
      [ -z "$(find "$d" -path "*/pod*" -name cgroup.procs -exec cat {} + 2>/dev/null | head -1)" ] || what+=" processes in pod cgroups of $d;"
    done
    echo "$what"
    [ -z "$what" ]
  }
  if ! wait_for 60 left; then fail "left after 60 s:$(left || true)"; fi
}
check delete "delete: the pods go, nothing of them stays on the host (processes, cgroups, mounts, volumes, address)" delete; show
