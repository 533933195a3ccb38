#!/usr/bin/env bash
# hack/k8s/node.sh: a one-node Kubernetes cluster on the harness containerd
# and Magnetar's sandboxers, everything below WORK (default _output/k8s-e2e)
# and on 127.0.0.1 only (settings: hack/k8s/lib.sh).
#
#   hack/k8s/node.sh start    certificates (once), etcd, kube-apiserver,
#                             kube-controller-manager, kube-scheduler, the
#                             harness containerd + sandboxers (hack/containerd.sh),
#                             the kubelet; waits for the node to be Ready and
#                             applies the RuntimeClass of every Magnetar handler
#                             configured (deploy/kubernetes)
#   hack/k8s/node.sh stop     stop all of it (the harness's teardown removes
#                             every pod, mount and cgroup), put back what the
#                             kubelet changed on the host
#   hack/k8s/node.sh reset    stop, then forget the cluster (etcd data, the
#                             kubelet's dir, pod logs) and the harness state
#   hack/k8s/node.sh status   what runs
#
# Then: export KUBECONFIG=_output/k8s-e2e/k8s/admin.kubeconfig and use
# _output/prefix/bin/kubectl. Binaries: make k8s-tools (hack/install-tools.sh k8s).
# HARNESS_SANDBOXERS (hack/containerd.sh) picks the sandboxers; default all in bin/.
#
# What the kubelet does outside WORK, and how it is undone at stop:
#  - it sets six sysctls at start (vm.overcommit_memory, vm.panic_on_oom,
#    kernel.panic, kernel.panic_on_oops, kernel.keys.root_max{keys,bytes}):
#    start saves the values it finds, stop writes them back;
#  - /var/lib/kubelet/device-plugins/kubelet.sock and /var/log/containers/*
#    (paths it hard-codes): stop removes ours (and the directories if start
#    made them); start refuses to run next to another live kubelet;
#  - pod cgroups below K8S_CGROUP_ROOT (/magnetar-k8s) in every hierarchy:
#    the harness's teardown removes them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

B=$PREFIX/bin
P=$KS/pki
R=$KS/run
L=$WORK/logs
CD=$ROOT/hack/containerd.sh
SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"
DP_SOCK=/var/lib/kubelet/device-plugins/kubelet.sock
# the daemons in start order (stopped in reverse)
DAEMONS="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet"

alive() { [ -f "$R/$1.pid" ] && pid_alive "$(cat "$R/$1.pid")"; }

# launch NAME CMD...: start a daemon of the node in the background, in its own session
launch() {
  local n=$1
  shift
  if alive "$n"; then log "$n already running, pid $(cat "$R/$n.pid")"; return 0; fi
  echo "=== $(date -Is) start" >> "$L/$n.log"
  setsid "$@" </dev/null >>"$L/$n.log" 2>&1 &
  echo $! > "$R/$n.pid"
}

# stop_daemon NAME: TERM, 20 s, KILL
stop_daemon() { pidfile_stop "$1" "$R/$1.pid" TERM 20; }

# wait_up NAME SECONDS CMD...: poll CMD until it succeeds; fail early if NAME died
wait_up() {
  local n=$1 t=$2 i
  shift 2
  for i in $(seq 1 $((t * 5))); do
    if "$@" >/dev/null 2>&1; then log "$n ready"; return 0; fi
    if ! alive "$n"; then log "$n exited (log $L/$n.log):"; tail -20 "$L/$n.log" >&2; return 1; fi
    sleep 0.2
  done
  log "$n not ready after $t s (log $L/$n.log):"; tail -20 "$L/$n.log" >&2
  return 1
}

# --- certificates -----------------------------------------------------------------

# sign NAME SUBJECT [SAN]: a key and a certificate signed by the CA; a server
# certificate when SAN is given, else a client certificate
sign() {
  local n=$1 subj=$2 san=${3:-}
  openssl genrsa -out "$P/$n.key" 2048 2>/dev/null
  openssl req -new -key "$P/$n.key" -subj "$subj" -out "$P/$n.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } > "$P/$n.ext"
  openssl x509 -req -in "$P/$n.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 3650 \
    -extfile "$P/$n.ext" -out "$P/$n.crt" 2>/dev/null
  rm -f "$P/$n.csr" "$P/$n.ext"
}

# kubeconfig NAME: $KS/NAME.kubeconfig with the client certificate NAME
kubeconfig() {
  cat > "$KS/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: magnetar-k8s
  cluster: {server: "https://127.0.0.1:$K8S_API_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$P/$1.crt", client-key: "$P/$1.key"}
contexts:
- name: magnetar-k8s
  context: {cluster: magnetar-k8s, user: $1}
current-context: magnetar-k8s
EOF
  chmod 600 "$KS/$1.kubeconfig"
}

pki() {
  if [ -f "$P/ca.crt" ] && [ -f "$P/sa.pub" ]; then return 0; fi
  command -v openssl >/dev/null || die "openssl missing: run make tools"
  local tmp=$P.tmp.$$ svc_ip
  rm -rf "$tmp"; mkdir -p "$tmp"; chmod 700 "$tmp"
  (
    P=$tmp
    openssl genrsa -out "$P/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$P/ca.key" -subj "/CN=magnetar-k8s-ca" -days 3650 -out "$P/ca.crt"
    # the API server's first Service address (the kubernetes Service)
    svc_ip=$(awk -F'[./]' '{print $1"."$2"."$3"."$4+1}' <<<"$K8S_SERVICE_CIDR")
    sign apiserver "/CN=kube-apiserver" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$svc_ip"
    sign admin "/O=system:masters/CN=magnetar-k8s-admin"
    sign kubelet "/O=system:nodes/CN=system:node:$K8S_NODE"
    # the API server to the kubelet (logs, exec, attach, port-forward): the
    # kubelet asks the API server whether this user may (Webhook authorization)
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    sign kube-controller-manager "/CN=system:kube-controller-manager"
    sign kube-scheduler "/CN=system:kube-scheduler"
    openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
    openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  )
  rm -rf "$P"; mv "$tmp" "$P"
  local n
  for n in admin kubelet kube-controller-manager kube-scheduler; do kubeconfig "$n"; done
  log "certificates in $P"
}

# --- the kubelet ------------------------------------------------------------------

kubelet_config() {
  cat > "$KS/kubelet-config.yaml" <<EOF
# written by hack/k8s/node.sh
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $K8S_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $K8S_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$P/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://$CSOCK"
imageServiceEndpoint: "unix://$CSOCK"
cgroupDriver: cgroupfs
cgroupRoot: "$CGROUP_PARENT"
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
# the kubelet refuses a cgroup v1 host since 1.35 unless told otherwise
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
podLogsDir: "$KS/pod-logs"
volumePluginDir: "$KS/volume-plugins"
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
registerNode: true
serializeImagePulls: false
# the test images are imported, never pulled: never collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
# a crashing container is restarted within 2 s, not after up to 5 min
crashLoopBackOff: {maxContainerRestartPeriod: 2s}
featureGates:
  # pod and container stats from the runtime (CRI ListPodSandboxStats:
  # containerd asks the sandboxer's Controller.Metrics), not from the
  # kubelet's own view of its pod cgroups, which a sandboxer need not use
  PodAndContainerStatsFromCRI: true
  # a running pod's RuntimeClass overhead counted once at admission, as the
  # scheduler counts it (kube-scheduler's flags below): with this gate on the
  # kubelet reads a pod's requests back from its pod cgroup, which holds the
  # overhead, and adds the overhead again (kubernetes/kubernetes#139627):
  # VM pods were refused OutOfcpu ("used: 2110, capacity: 2000") with
  # 1110m really requested
  InPlacePodLevelResourcesVerticalScaling: false
EOF
}

# cgroup_root_make: the kubelet's --cgroup-root must exist in every hierarchy
cgroup_root_make() {
  local m
  for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    [ -d "$m$CGROUP_PARENT" ] && continue
    mkdir -p "$m$CGROUP_PARENT"
    # cgroup v1 cpuset: a new cgroup has no CPUs or memory nodes until given its parent's
    if [ -f "$m$CGROUP_PARENT/cpuset.cpus" ]; then
      cat "$m/cpuset.cpus" > "$m$CGROUP_PARENT/cpuset.cpus"
      cat "$m/cpuset.mems" > "$m$CGROUP_PARENT/cpuset.mems"
    fi
  done
}

sysctl_save() {
  [ -f "$KS/sysctl.saved" ] && return 0
  local s
  for s in $SYSCTLS; do echo "$s $(cat "/proc/sys/$s")"; done > "$KS/sysctl.saved.tmp"
  mv "$KS/sysctl.saved.tmp" "$KS/sysctl.saved"
}
sysctl_restore() {
  [ -f "$KS/sysctl.saved" ] || return 0
  local s v
  while read -r s v; do
    if [ "$(cat "/proc/sys/$s")" != "$v" ]; then
      echo "$v" > "/proc/sys/$s" || log "could not put back $s=$v"
    fi
  done < "$KS/sysctl.saved"
  rm -f "$KS/sysctl.saved"
}

host_paths_claim() {
  if is_listening "$DP_SOCK"; then
    die "another kubelet runs on this host ($DP_SOCK is served): this one would take its device plugin socket"
  fi
  if [ ! -d /var/lib/kubelet ]; then touch "$KS/made-var-lib-kubelet"; fi
  if [ ! -d /var/log/containers ]; then touch "$KS/made-var-log-containers"; fi
}
host_paths_release() {
  rm -f "$DP_SOCK"
  if [ -f "$KS/made-var-lib-kubelet" ]; then
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
    rm -f "$KS/made-var-lib-kubelet"
  fi
  # the symlinks to our pod logs (the kubelet removes them with the containers)
  find /var/log/containers -maxdepth 1 -type l -lname "$KS/pod-logs/*" -delete 2>/dev/null || true
  if [ -f "$KS/made-var-log-containers" ]; then
    rmdir /var/log/containers 2>/dev/null || true
    rm -f "$KS/made-var-log-containers"
  fi
}

# --- start, stop --------------------------------------------------------------------

do_start() {
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [ -x "$B/$b" ] || die "$b missing in $B: run make k8s-tools (hack/install-tools.sh k8s)"
  done
  [ "$(cat /proc/1/comm)" != systemd ] || [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] ||
    die "a systemd cgroup v2 host: the node is written for the cgroupfs driver only"
  mkdir -p "$KS" "$R" "$L"
  chmod 700 "$KS"
  pki
  host_paths_claim

  launch etcd "$B/etcd" --name magnetar-k8s --data-dir "$KS/etcd" \
    --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
    --initial-cluster "magnetar-k8s=http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
    --unsafe-no-fsync --log-level warn
  wait_up etcd 30 curl -fsS "http://127.0.0.1:$K8S_ETCD_PORT/health"

  # --endpoint-reconciler-type=none: the reconciler refuses a loopback
  # --advertise-address (the kubernetes Service then has no endpoints)
  launch kube-apiserver "$B/kube-apiserver" --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$K8S_API_PORT" \
    --endpoint-reconciler-type=none --cert-dir="$KS/apiserver-certs" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --client-ca-file="$P/ca.crt" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname --allow-privileged=true --profiling=false --v=1
  wait_up kube-apiserver 120 kubectl get --raw /readyz

  local c
  for c in kube-controller-manager kube-scheduler; do
    local port=$K8S_KCM_PORT extra=()
    if [ "$c" = kube-controller-manager ]; then
      extra=(--service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt"
        --use-service-account-credentials=true
        --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key")
    else
      port=$K8S_SCHED_PORT
      # a pod found unschedulable is tried again within 20 s, not the
      # default 5 min, which outlasts the e2e's waits; and a running pod
      # counts its RuntimeClass overhead once: with this gate on (the
      # default since 1.36) the scheduler takes a pod's requests as the
      # pod cgroup's, which hold the overhead already, and adds the
      # overhead again (kubernetes/kubernetes#139627, open): each VM pod
      # counted 250m more than it asks, and the Deployment's replicas
      # stayed Pending "Insufficient cpu" on this 2-core node (the
      # kubelet's admission counts the same way: off there too)
      extra=(--pod-max-in-unschedulable-pods-duration=20s
        --feature-gates=InPlacePodLevelResourcesVerticalScaling=false)
    fi
    launch "$c" "$B/$c" --kubeconfig="$KS/$c.kubeconfig" \
      --authentication-kubeconfig="$KS/$c.kubeconfig" --authorization-kubeconfig="$KS/$c.kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$port" --cert-dir="$KS/$c-certs" --leader-elect=false \
      --profiling=false "${extra[@]}" --v=1
  done
  wait_up kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$K8S_KCM_PORT/healthz"
  wait_up kube-scheduler 60 curl -fsSk "https://127.0.0.1:$K8S_SCHED_PORT/healthz"

  "$CD" start
  cgroup_root_make
  sysctl_save
  kubelet_config
  launch kubelet "$B/kubelet" --config="$KS/kubelet-config.yaml" --kubeconfig="$KS/kubelet.kubeconfig" \
    --root-dir="$KS/kubelet" --cert-dir="$KS/kubelet/pki" --hostname-override="$K8S_NODE" --v="${KUBELET_V:-2}"
  wait_up kubelet 120 kubectl get node "$K8S_NODE"
  wait_up kubelet 120 kubectl wait --for=condition=Ready "node/$K8S_NODE" --timeout=5s
  # the controllers make the default ServiceAccount and the CA ConfigMap of each namespace
  wait_up kube-controller-manager 60 kubectl get serviceaccount/default configmap/kube-root-ca.crt

  # the RuntimeClass of every Magnetar handler this containerd has
  source "$WORK/etc/harness.env"
  local h f
  for h in $HANDLERS; do
    f=$ROOT/deploy/kubernetes/runtimeclass-$h.yaml
    if [ -f "$f" ]; then kubectl apply -f "$f" >/dev/null; fi
  done
  log "node $K8S_NODE ready: $("$B/kubelet" --version), runtime classes: $(kubectl get runtimeclass -o name | sed 's|.*/||' | tr '\n' ' ')"
  log "  export KUBECONFIG=$KUBECONFIG; $B/kubectl get pods -A"
}

do_stop() {
  local d
  for d in $(tr ' ' '\n' <<<"$DAEMONS" | tac); do stop_daemon "$d"; done
  # all pods, then containerd and the sandboxers; every mount below WORK
  # (the kubelet's volumes too), the pod cgroups below K8S_CGROUP_ROOT
  "$CD" stop
  sysctl_restore
  host_paths_release
  log "node stopped (WORK=$WORK)"
}

do_status() {
  local d
  for d in $DAEMONS; do
    if alive "$d"; then echo "$d: running, pid $(cat "$R/$d.pid")"; else echo "$d: not running"; fi
  done
  "$CD" status
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
reset)
  do_stop
  # the harness's reset refuses to wipe WORK while something is mounted below it
  "$CD" reset >/dev/null
  rm -rf "${KS:?}"/{etcd,kubelet,pod-logs,volume-plugins,run,apiserver-certs,kube-controller-manager-certs,kube-scheduler-certs}
  log "reset $KS (certificates kept)" ;;
status) do_status ;;
*) echo "usage: $0 start|stop|reset|status" >&2; exit 2 ;;
esac
