#!/usr/bin/env bash
# hack/vmm/e2e/net.sh: a pod in a VM is on the pod network like any pod.
#   vm   pod on RUNTIME_HANDLER (magnetar-vmm): busybox httpd on :80, its
#        eth0 carries the pod IP inside the guest
#   peer pod on containerd's runc shim: busybox httpd on :80
# The host reaches the VM pod's IP (HTTP); the peer pod reaches the VM pod;
# the VM pod reaches the peer pod; the VM pod's routes and DNS are the pod's.
#
#   RUNTIME_HANDLER=magnetar-vmm [WORK=...] hack/vmm/e2e/net.sh
set -euo pipefail
source "$(dirname "$0")/../../e2e/lib.sh"
e2e_init

HTTPD='["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]'
pod_ip() { crictl inspectp -o go-template --template '{{.status.network.ip}}' "$1"; }
web_up() { wait_ctr_state "$1" CONTAINER_RUNNING 30; }
# (Debian busybox wget crashes with -T: timeout bounds it instead)
host_get() { timeout 5 busybox wget -q -O - "http://$VM_IP/"; }
host_reaches_vm() { wait_for 20 host_get; expect_eq "host -> vm pod" "$(host_get)" "hello-from-vm"; }
peer_reaches_vm() { expect_eq "peer pod -> vm pod" "$(exec_out "$PEER_C" timeout 5 wget -q -O - "http://$VM_IP/")" "hello-from-vm"; }
vm_reaches_peer() { expect_eq "vm pod -> peer pod" "$(exec_out "$VM_C" timeout 5 wget -q -O - "http://$PEER_IP/")" "hello-from-peer"; }
vm_eth0() { expect_match "eth0 in the guest" "$(exec_out "$VM_C" ip -4 addr show eth0)" "inet ${VM_IP//./\\.}/"; }
vm_route() { expect_match "default route in the guest" "$(exec_out "$VM_C" ip route)" "^default via "; }
vm_dns() { expect_match "resolv.conf in the container" "$(exec_out "$VM_C" cat /etc/resolv.conf)" "nameserver"; }
vm_hostname() { expect_eq "hostname in the container" "$(exec_out "$VM_C" hostname)" "vm"; }

req  "runp vm pod" run_pod vm; VM_POD=$LAST
req  "vm pod: httpd" start_ctr "$VM_POD" vm web "$BUSYBOX_IMAGE" "$HTTPD"; VM_C=$LAST
req  "vm pod: container running" web_up "$VM_C"
req  "vm pod IP" pod_ip "$VM_POD"; VM_IP=$LAST
RUNTIME_HANDLER=runc req "runp peer pod (runc shim)" run_pod peer; PEER_POD=$LAST
req  "peer pod: httpd" start_ctr "$PEER_POD" peer web "$BUSYBOX_IMAGE" "$HTTPD"; PEER_C=$LAST
req  "peer pod: container running" web_up "$PEER_C"
req  "peer pod IP" pod_ip "$PEER_POD"; PEER_IP=$LAST
step "the guest's eth0 has the pod IP" vm_eth0
step "the guest has the pod's default route" vm_route
step "the container has the pod's DNS" vm_dns
step "the container has the pod's hostname" vm_hostname
step "host reaches the vm pod (HTTP)" host_reaches_vm
step "another pod reaches the vm pod" peer_reaches_vm
step "the vm pod reaches another pod" vm_reaches_peer
step "rmp -f vm pod" crictl rmp -f "$VM_POD"
step "rmp -f peer pod" crictl rmp -f "$PEER_POD"
