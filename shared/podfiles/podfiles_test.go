package podfiles

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
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

// Mount binds the pod's files where the spec mounts none, read-only with a
// read-only root, and the pod's /dev/shm instead of a private tmpfs.
func TestMount(t *testing.T) {
	sp := &specs.Spec{Root: &specs.Root{Readonly: true}, Mounts: []specs.Mount{
		{Destination: "/etc/hosts", Type: "bind", Source: "/mine"},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"},
	}}
	Mount(sp, "/pod", "/pod/shm")
	got := map[string]specs.Mount{}
	for _, m := range sp.Mounts {
		got[m.Destination] = m
	}
	if len(sp.Mounts) != 4 || got["/etc/hosts"].Source != "/mine" || got["/etc/hostname"].Source != "/pod/hostname" ||
		got["/etc/resolv.conf"].Options[len(got["/etc/resolv.conf"].Options)-1] != "ro" || got["/dev/shm"].Source != "/pod/shm" {
		t.Errorf("mounts %+v", sp.Mounts)
	}
	sp = &specs.Spec{Mounts: []specs.Mount{{Destination: "/dev/shm", Type: "bind", Source: "/host/shm"}}}
	Mount(sp, "/pod", "/pod/shm")
	if sp.Mounts[0].Source != "/host/shm" || len(sp.Mounts) != 4 || slices.Contains(sp.Mounts[1].Options, "ro") {
		t.Errorf("a bind of the spec's own kept, read-write: %+v", sp.Mounts)
	}
	sp = &specs.Spec{}
	if Mount(sp, "/pod", ""); len(sp.Mounts) != 3 {
		t.Errorf("no shm: %+v", sp.Mounts)
	}
}
