package gvisorsb

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/gvisortest"
)

// mountAt is the last mount of sp at dst and its index (-1: none).
func mountAt(sp *specs.Spec, dst string) (specs.Mount, int) {
	at := -1
	for i, m := range sp.Mounts {
		if m.Destination == dst {
			at = i
		}
	}
	if at < 0 {
		return specs.Mount{}, -1
	}
	return sp.Mounts[at], at
}

// runsc ignores linux.readonlyPaths (critest: "runtime should support
// ReadonlyPaths" touched /tmp/test and got no error): each becomes a
// read-only bind mount of its host path.
func TestReadonlyPaths(t *testing.T) {
	rootfs, vol, pod := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{"tmp", "run/x", "etc", "var"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(vol, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"var/run": "/run", "up": "../../../../..", "tovol": "data/sub"} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pod, "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sp := gvisortest.ContainerSpec("p", "/cg/c")
	sp.Root.Path = rootfs
	sp.Mounts = append(sp.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate", "rw"}},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(pod, "hosts"), Options: []string{"rbind", "rprivate", "rw"}},
	)
	sp.Linux.ReadonlyPaths = []string{"/tmp", "/var/run/x", "/tovol", "/etc", "/etc/hosts", "/proc/sys", "/missing", "/up/tmp"}
	skipped, err := readonlyPaths(sp)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(skipped, []string{"/proc/sys"}) {
		t.Errorf("skipped %v, want /proc/sys", skipped)
	}
	for dst, src := range map[string]string{
		"/tmp":      filepath.Join(rootfs, "tmp"), // /up/tmp too: the link stays in the root
		"/run/x":    filepath.Join(rootfs, "run/x"),
		"/data/sub": filepath.Join(vol, "sub"),
		"/etc":      filepath.Join(rootfs, "etc"),
	} {
		m, _ := mountAt(sp, dst)
		if m.Source != src || m.Type != "bind" || !slices.Contains(m.Options, "ro") {
			t.Errorf("%s: %+v, want a read-only bind of %s", dst, m, src)
		}
	}
	_, etc := mountAt(sp, "/etc")
	hosts, h := mountAt(sp, "/etc/hosts")
	if h < etc || !slices.Contains(hosts.Options, "ro") || slices.Contains(hosts.Options, "rw") {
		t.Errorf("/etc/hosts (index %d, /etc %d): %+v, want read-only, after /etc", h, etc, hosts)
	}
	if m, _ := mountAt(sp, "/missing"); m.Destination != "" {
		t.Errorf("a missing path mounted: %+v", m)
	}
	if n := len(sp.Mounts); n != 5+2+4 {
		t.Errorf("%d mounts: %+v", n, sp.Mounts)
	}

	sp.Linux.ReadonlyPaths = []string{"/"}
	if _, err := readonlyPaths(sp); err != nil || !sp.Root.Readonly {
		t.Errorf("readonly path /: %v, root %+v", err, sp.Root)
	}
	if err := os.Symlink("loop", filepath.Join(rootfs, "loop")); err != nil {
		t.Fatal(err)
	}
	sp.Linux.ReadonlyPaths = []string{"/loop"}
	if _, err := readonlyPaths(sp); err == nil || !strings.Contains(err.Error(), "readonlyPaths") {
		t.Errorf("a link loop: %v", err)
	}
}

// Every runsc call of a pod enforces the container's seccomp profile
// (critest's SeccompProfilePath specs: runsc ignores linux.seccomp without
// --oci-seccomp); runsc.flags, after it, can turn it off.
func TestPodFlags(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Runsc.Flags = []string{"--oci-seccomp=false"}
	got := podFlags(cfg, false)
	want := []string{"--platform=systrap", "--network=sandbox", "--oci-seccomp", "--oci-seccomp=false"}
	if !slices.Equal(got, want) {
		t.Errorf("podFlags = %q, want %q", got, want)
	}
	if got := podFlags(DefaultConfig(), true); !slices.Contains(got, "--oci-seccomp") || !slices.Contains(got, "--network=host") {
		t.Errorf("host network: %q", got)
	}
}
