package podfiles

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// nsPod is a pod config with namespace options o, hostname h and sysctls.
func nsPod(o *runtime.NamespaceOption, h string, sys map[string]string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Hostname: h, Linux: &runtime.LinuxPodSandboxConfig{Sysctls: sys,
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: o}}}
}

func TestCheck(t *testing.T) {
	const netns = "/proc/self/ns/net"
	notNS := filepath.Join(t.TempDir(), "x")
	node := runtime.NamespaceMode_NODE
	hostNet := &runtime.NamespaceOption{Network: node}
	userns := &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}}
	vm := Rules{Handler: "h", NoHostNetwork: "no host network", OwnKernel: "a VM pod"}
	for _, c := range []struct {
		name   string
		netns  string
		cfg    *runtime.PodSandboxConfig
		r      Rules
		want   error  // nil: accepted
		field  string // named by the error
		wantHN string // the hostname of an accepted pod
	}{
		{"plain", netns, nsPod(nil, "", nil), vm, nil, "", "0123456789ab"},
		{"hostname", netns, nsPod(nil, "web-1", map[string]string{"net.ipv4.ip_forward": "1"}), vm, nil, "", "web-1"},
		{"host network refused", "", nsPod(hostNet, "", nil), vm, errdefs.ErrInvalidArgument, "namespace_options.network", ""},
		{"host network", "", nsPod(hostNet, "", nil), Rules{}, nil, "", "0123456789ab"},
		{"host pid", netns, nsPod(&runtime.NamespaceOption{Pid: node}, "", nil), vm, errdefs.ErrInvalidArgument, "namespace_options", ""},
		{"host ipc", netns, nsPod(&runtime.NamespaceOption{Ipc: node}, "", nil), vm, errdefs.ErrInvalidArgument, "namespace_options", ""},
		{"host ipc allowed", netns, nsPod(&runtime.NamespaceOption{Ipc: node}, "", nil), Rules{}, nil, "", "0123456789ab"},
		{"host ipc sysctl", netns, nsPod(&runtime.NamespaceOption{Ipc: node}, "", map[string]string{"kernel.shmmax": "1"}), Rules{}, errdefs.ErrInvalidArgument, "sysctls", ""},
		{"userns refused", netns, nsPod(userns, "", nil), vm, errdefs.ErrNotImplemented, "userns_options", ""},
		{"userns", netns, nsPod(userns, "", nil), Rules{UserNS: true}, nil, "", "0123456789ab"},
		{"no netns", "", nsPod(nil, "", nil), vm, errdefs.ErrInvalidArgument, "netns_path", ""},
		{"not a netns", notNS, nsPod(nil, "", nil), vm, errdefs.ErrInvalidArgument, "netns_path", ""},
		{"bad hostname", netns, nsPod(nil, "a b", nil), vm, errdefs.ErrInvalidArgument, "options.hostname", ""},
		{"host network sysctl", "", nsPod(hostNet, "", map[string]string{"net.core.somaxconn": "1"}), Rules{}, errdefs.ErrInvalidArgument, "sysctls", ""},
	} {
		p, err := Check("0123456789abcdef", c.netns, c.cfg, c.r)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == nil && p.Hostname != c.wantHN:
			t.Errorf("%s: hostname %q, want %q", c.name, p.Hostname, c.wantHN)
		case c.want != nil && (!errdefs.IsInvalidArgument(err) && !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%s: %v, want %v naming %s", c.name, err, c.want, c.field)
		case c.want == errdefs.ErrNotImplemented && !errdefs.IsNotImplemented(err), c.want == errdefs.ErrInvalidArgument && !errdefs.IsInvalidArgument(err):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
