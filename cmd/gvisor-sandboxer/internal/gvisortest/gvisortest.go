// Package gvisortest is what the gVisor sandboxer's tests share: the host
// they need (root, the real runsc, a static busybox, the magnetar-podinit
// pause built from this checkout), a container image and a container spec
// as containerd's CRI writes one.
package gvisortest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/podinit"
)

// Host is what the tests need of the host.
type Host struct {
	// Runsc is runsc: MAGNETAR_RUNSC, else _output/prefix/bin/runsc of
	// the checkout (hack/install-tools.sh), else runsc in PATH.
	Runsc string
	// Busybox is a static busybox (Debian's busybox-static).
	Busybox string
	// Pause is magnetar-podinit, built once per test binary.
	Pause string
}

var pause struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Need returns the host, or skips t saying what is missing.
func Need(t *testing.T) Host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runsc, mounts, cgroups)")
	}
	var h Host
	if h.Runsc = os.Getenv("MAGNETAR_RUNSC"); h.Runsc == "" {
		_, file, _, _ := runtime.Caller(0)
		if p := filepath.Join(filepath.Dir(file), "../../../../_output/prefix/bin/runsc"); exists(p) {
			h.Runsc, _ = filepath.Abs(p)
		} else if h.Runsc, _ = exec.LookPath("runsc"); h.Runsc == "" {
			t.Skip("runsc not found: set MAGNETAR_RUNSC or run hack/install-tools.sh")
		}
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if exists(p) {
			h.Busybox = p
			break
		}
	}
	if h.Busybox == "" {
		t.Skip("busybox (static: Debian's busybox-static) not installed")
	}
	pause.once.Do(func() {
		if pause.dir, pause.err = os.MkdirTemp("", "gvisortest-pause-"); pause.err != nil {
			return
		}
		pause.path = filepath.Join(pause.dir, podinit.Binary)
		cmd := exec.Command("go", "build", "-o", pause.path, "github.com/magnetar-runtime/magnetar/cmd/magnetar-podinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pause.err = fmt.Errorf("go build magnetar-podinit: %v: %s", err, out)
		}
	})
	if pause.err != nil {
		t.Skipf("no pause binary: %v", pause.err)
	}
	h.Pause = pause.path
	return h
}

// Cleanup removes what Need built; call it from TestMain after m.Run.
func Cleanup() {
	if pause.dir != "" {
		_ = os.RemoveAll(pause.dir)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// WriteImage makes a container image at dir: busybox, its sh, and empty
// files where the pod's /etc files are mounted.
func WriteImage(t *testing.T, dir, busybox string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "dev", "etc", "tmp", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ContainerSpec is a container spec as containerd's CRI writes one for a
// container of pod (its annotations name it), in cgroup; the caller sets
// the process's args and the root.
func ContainerSpec(pod, cgroup string) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"}
	ann := map[string]string{"io.kubernetes.cri.container-type": "container"}
	if pod != "" {
		ann["io.kubernetes.cri.sandbox-id"] = pod
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Cwd:          "/",
			Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Annotations: ann,
		Linux: &specs.Linux{
			CgroupsPath: cgroup,
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}},
		},
	}
}
