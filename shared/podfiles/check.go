package podfiles

import (
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/nsutil"
)

// Rules are what a sandboxer refuses of a pod beyond what Check refuses
// of every pod.
type Rules struct {
	// Handler names the sandboxer in errors (magnetar-quark).
	Handler string
	// NoHostNetwork, when set, refuses a host-network pod, saying why.
	NoHostNetwork string
	// OwnKernel, when set, refuses a pod that shares the host's PID or IPC
	// namespace, saying why (the subject of the sentence: "a Quark pod
	// runs on its own kernel and").
	OwnKernel string
	// UserNS accepts a pod with a user namespace of its own (mode POD);
	// without it such a pod is refused as not implemented.
	UserNS bool
}

// Pod is what Check found of a pod.
type Pod struct {
	// Hostname is the pod's, or the first 12 characters of its id when it
	// sets none.
	Hostname    string
	HostNetwork bool
	HostIPC     bool
}

// Check checks a CRI pod's configuration before anything is made for it:
// the host namespaces and user namespace it asks for against r, its
// network namespace (netns_path: required unless the pod uses the host's
// network; when given, a network namespace), its hostname and sysctls.
// Every error names the field and wraps an errdefs error.
func Check(id, netns string, cfg *runtime.PodSandboxConfig, r Rules) (Pod, error) {
	nso := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	p := Pod{Hostname: cfg.GetHostname(), HostNetwork: nso.GetNetwork() == runtime.NamespaceMode_NODE,
		HostIPC: nso.GetIpc() == runtime.NamespaceMode_NODE}
	if p.HostNetwork && r.NoHostNetwork != "" {
		return Pod{}, fmt.Errorf("options.linux.security_context.namespace_options.network: %s: %w", r.NoHostNetwork, errdefs.ErrInvalidArgument)
	}
	if r.OwnKernel != "" && (nso.GetPid() == runtime.NamespaceMode_NODE || p.HostIPC) {
		return Pod{}, fmt.Errorf("options.linux.security_context.namespace_options: %s cannot share the host's PID or IPC namespace: %w", r.OwnKernel, errdefs.ErrInvalidArgument)
	}
	if !r.UserNS && nso.GetUsernsOptions() != nil && nso.GetUsernsOptions().GetMode() == runtime.NamespaceMode_POD {
		return Pod{}, fmt.Errorf("options.linux.security_context.namespace_options.userns_options: user namespaces are not supported by %s: %w", r.Handler, errdefs.ErrNotImplemented)
	}
	if netns == "" && !p.HostNetwork {
		return Pod{}, fmt.Errorf("netns_path: must be set for a pod that does not use the host network: %w", errdefs.ErrInvalidArgument)
	}
	if err := nsutil.CheckNetNSPath(netns); err != nil {
		return Pod{}, err
	}
	if p.Hostname == "" {
		p.Hostname = id[:min(len(id), 12)]
	}
	if err := ValidateHostname(p.Hostname); err != nil {
		return Pod{}, err
	}
	if err := ValidateSysctls(cfg.GetLinux().GetSysctls(), p.HostNetwork, p.HostIPC); err != nil {
		return Pod{}, err
	}
	return p, nil
}
