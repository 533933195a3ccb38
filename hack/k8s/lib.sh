#!/usr/bin/env bash
# hack/k8s/lib.sh: settings of the one-node Kubernetes cluster of hack/k8s
# (node.sh) and of its end-to-end stage (e2e-all.sh, e2e.sh). Source it.
#
# The node is a harness containerd (hack/containerd.sh) with Magnetar's
# sandboxers, plus etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and a kubelet, all below WORK (default _output/k8s-e2e) and
# on 127.0.0.1 only. Its own CNI bridge and subnet keep it apart from the
# other harnesses; its own cgroup root (K8S_CGROUP_ROOT) apart from another
# kubelet's /kubepods.

# WORK first: hack/lib.sh derives the harness paths (containerd socket, crictl
# config, shim socket dir) from it
export WORK=${K8S_WORK:-${OUT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/_output}/k8s-e2e}
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# pods on the bridge mgbr9 in 10.249.0.0/17; Service addresses (virtual:
# there is no kube-proxy) in 10.249.128.0/24
export BRIDGE=${K8S_BRIDGE:-mgbr9} SUBNET=${K8S_SUBNET:-10.249.0.0/17}
K8S_SERVICE_CIDR=${K8S_SERVICE_CIDR:-10.249.128.0/24}
# the kubelet's --cgroup-root, and the harness's cgroup parent (so that its
# teardown finds what is left in there)
export CGROUP_PARENT=${K8S_CGROUP_ROOT:-/magnetar-k8s}
# the node's name is "localhost": the kubelet refuses a loopback node IP, so
# the API server reaches it by its Hostname address, which resolves to 127.0.0.1
K8S_NODE=localhost
K8S_ETCD_PORT=${K8S_ETCD_PORT:-12379}     # and K8S_ETCD_PORT+1 for peers
K8S_API_PORT=${K8S_API_PORT:-16443}
K8S_KCM_PORT=${K8S_KCM_PORT:-20257}       # kube-controller-manager
K8S_SCHED_PORT=${K8S_SCHED_PORT:-20259}   # kube-scheduler
K8S_KUBELET_PORT=${K8S_KUBELET_PORT:-20250}
K8S_KUBELET_HEALTHZ_PORT=${K8S_KUBELET_HEALTHZ_PORT:-20248}

# the node's state: pki/, etcd/, kubelet/ (--root-dir), pod-logs/, run/ (pid
# files), *.kubeconfig; the logs go to WORK/logs with the harness's
KS=$WORK/k8s
export KUBECONFIG=$KS/admin.kubeconfig

kubectl() { timeout -k 5 "${KUBECTL_TIMEOUT:-120}" "$PREFIX/bin/kubectl" --kubeconfig "$KS/admin.kubeconfig" "$@"; }

# --- the stage's runtime handlers ---------------------------------------------------
# One line per runtime handler of the stage: "HANDLER WORKLOAD REPLICAS".
# WORKLOAD is what its pods run: linux (the busybox image: sh, httpd, tar) or
# wasm (the WASI test module of hack/wasm/guest); REPLICAS the size the
# handler's Deployment is scaled to (0: no Deployment). The handler's
# RuntimeClass is deploy/kubernetes/runtimeclass-HANDLER.yaml.
K8S_HANDLER_TABLE=(
  "magnetar-runc linux 5"
  "magnetar-wasm wasm  5"
  "magnetar-vmm  linux 2"
  "magnetar-gvisor linux 3"
  "magnetar-quark linux 3"
  "magnetar-clh linux 0"
  "magnetar-stratovirt linux 0"
)
# What a handler cannot do, one line each: "HANDLER FEATURE REASON". The
# stage still runs the feature's check there and counts it as skipped with
# the reason; if it passes, the expectation is stale and the step fails.
# Features: emptydir configmap secret token limits probes logs logs-follow
# exec exec-tty tty-name attach port-forward cp restart oom stats deployment delete.
K8S_CANNOT=(
  "magnetar-wasm exec-tty WASI has no terminal: the wasm sandboxer refuses a process with a tty"
  "magnetar-wasm cp kubectl cp runs tar in the container; a wasm container runs WASI modules only"
  "magnetar-wasm port-forward WASI preview 1 has no listening sockets: nothing in a wasm pod accepts the forwarded connection"
  "magnetar-wasm tty-name WASI has no terminal: the wasm sandboxer refuses a process with a tty"
  "magnetar-gvisor tty-name runsc gives an exec's terminal to the process as a host file: a terminal (isatty, line editing, exit code), but not one of the sandbox's /dev/pts, so tty(1) says 'not a tty'"
  "magnetar-gvisor limits runsc bounds a pod's memory and CPU at its sandbox (the sentry's cgroup, the pod's total): a container's cgroup files show the sandbox's limits, not its own"
  "magnetar-gvisor oom runsc bounds the memory of the whole sandbox: a container past its limit gets the sandbox killed by the host kernel, every container of the pod ends (exit 255, reason Error) and the kubelet starts the pod again; no per-container OOM kill"
  "magnetar-gvisor port-forward gVisor's netstack serves the pod's network inside the sentry: containerd's CRI dials 127.0.0.1:PORT in the pod's network namespace on the host, where nothing listens"
  "magnetar-vmm port-forward a VM pod's network stack is the guest's: containerd's CRI dials 127.0.0.1:PORT in the pod's network namespace on the host, which holds only the veth and the tap mirrored to the VM's NIC"
  "magnetar-clh port-forward a VM pod's network stack is the guest's: containerd's CRI dials 127.0.0.1:PORT in the pod's network namespace on the host, which holds only the veth and the tap mirrored to the VM's NIC"
  "magnetar-stratovirt port-forward a VM pod's network stack is the guest's: containerd's CRI dials 127.0.0.1:PORT in the pod's network namespace on the host, which holds only the veth and the tap mirrored to the VM's NIC"
)

# k8s_handler_field HANDLER N: field N (2 workload, 3 replicas) of the
# handler's line of K8S_HANDLER_TABLE (rc 1 if it has none)
k8s_handler_field() {
  local line f
  for line in "${K8S_HANDLER_TABLE[@]}"; do
    read -ra f <<<"$line"
    if [ "${f[0]}" = "$1" ]; then echo "${f[$(($2 - 1))]}"; return 0; fi
  done
  return 1
}
# k8s_cannot HANDLER FEATURE: print the reason HANDLER cannot do FEATURE (rc 1 if it can)
k8s_cannot() {
  local line h f r
  for line in "${K8S_CANNOT[@]}"; do
    read -r h f r <<<"$line"
    if [ "$h" = "$1" ] && [ "$f" = "$2" ]; then echo "$r"; return 0; fi
  done
  return 1
}
