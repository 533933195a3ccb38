package podfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	dns := &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
	if err := Write(dir, "web-1", false, dns); err != nil {
		t.Fatal(err)
	}
	read := func(n string) string { b, _ := os.ReadFile(filepath.Join(dir, n)); return string(b) }
	if got := read("hostname"); got != "web-1\n" {
		t.Errorf("hostname %q", got)
	}
	if got := read("hosts"); !strings.Contains(got, "127.0.1.1\tweb-1\n") {
		t.Errorf("hosts %q", got)
	}
	if got := read("resolv.conf"); got != "nameserver 10.0.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n" {
		t.Errorf("resolv.conf %q", got)
	}
}

func TestBadInput(t *testing.T) {
	for _, h := range []string{"a b", strings.Repeat("x", 65), "a/b"} {
		if err := ValidateHostname(h); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "hostname") {
			t.Errorf("hostname %q: %v", h, err)
		}
	}
	if err := ValidateSysctls(map[string]string{"net.core.somaxconn": "1"}, true, false); !errdefs.IsInvalidArgument(err) {
		t.Errorf("net sysctl on host network: %v", err)
	}
	if err := ValidateSysctls(map[string]string{"kernel.shmmax": "1"}, false, true); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ipc sysctl on host ipc: %v", err)
	}
	if _, err := ResolvConf(&runtime.DNSConfig{Servers: []string{"1.1.1.1\nnameserver 6.6.6.6"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("injected server: %v", err)
	}
	if _, err := ResolvConf(&runtime.DNSConfig{Searches: []string{"a b"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad search: %v", err)
	}
	if err := Write(t.TempDir(), "h", false, &runtime.DNSConfig{Servers: []string{"x y"}}); err == nil {
		t.Error("bad dns written")
	}
}
