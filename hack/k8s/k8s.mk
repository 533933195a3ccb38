# hack/k8s/k8s.mk: a real Kubernetes node in the test harness, included by the
# top-level Makefile.
#
#   make k8s-tools     kube-apiserver, kube-controller-manager, kube-scheduler,
#                      kubelet, kubectl ($KUBERNETES_VERSION) and etcd
#                      ($ETCD_VERSION) built from the Go module proxy into the
#                      tools cache, linked into _output/prefix/bin
#                      (hack/install-tools.sh k8s: about 11 min the first time)
#   make k8s-e2e       a one-node cluster on the harness containerd with the
#                      sandboxers of bin/ (hack/k8s/node.sh; WORK=_output/k8s-e2e,
#                      bridge mgbr9, 10.249.0.0/16) and the handlers
#                      magnetar-runc, magnetar-wasm, magnetar-gvisor (runsc),
#                      magnetar-quark (on the Quark stand-in), magnetar-vmm
#                      (QEMU pods of the guest image: about 1.5 min of the
#                      stage under TCG), magnetar-clh and magnetar-stratovirt
#                      (their VMM stand-ins over QEMU, make standins; no
#                      Deployment) through kubectl and the kubelet's API
#                      (hack/k8s/e2e-all.sh). Part of make test.
#                      Ends with "k8s-e2e: N passed, M failed, K skipped".
#   make k8s-vmm-e2e   magnetar-vmm alone.
# Knob: K8S_HANDLERS="magnetar-runc ..." picks the handlers of either target.
.PHONY: k8s-tools k8s-e2e k8s-vmm-e2e

k8s-tools: tools
	hack/install-tools.sh k8s

k8s-e2e: build tools k8s-tools images wasm-images standins guest-image
	K8S_HANDLERS="$${K8S_HANDLERS:-magnetar-runc magnetar-wasm magnetar-gvisor magnetar-quark magnetar-vmm magnetar-clh magnetar-stratovirt}" QUARK_BIN=$(QUARK_STANDIN) \
		GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/k8s/e2e-all.sh

k8s-vmm-e2e: build tools k8s-tools images guest-image
	K8S_HANDLERS="$${K8S_HANDLERS:-magnetar-vmm}" GUEST_OUT=$(CURDIR)/$(GUEST_OUT) hack/k8s/e2e-all.sh

test: k8s-e2e
