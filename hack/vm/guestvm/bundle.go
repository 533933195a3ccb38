package guestvm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Busybox is Debian's busybox-static (statically linked: it runs in the
// guest and in a container without any library).
const Busybox = "/bin/busybox"

// BusyboxBundle writes dir/<id>/{config.json,rootfs/} for a busybox
// container running args (busybox copied from Busybox, applets as symlinks).
// The container has its own pid, mount and ipc namespaces and shares the
// VM's uts and network namespaces (the VM is the pod). denySyscalls, when
// given, become a seccomp profile that fails them with EPERM (pick syscalls
// runc's own init does not need after loading the filter: getcwd, say, is
// one it needs).
func BusyboxBundle(dir, id string, args, denySyscalls []string) error {
	b, err := os.ReadFile(Busybox)
	if err != nil {
		return fmt.Errorf("busybox for the bundle (apt-get install busybox-static): %w", err)
	}
	if len(args) == 0 {
		return fmt.Errorf("bundle %s: no args: %w", id, errdefs.ErrInvalidArgument)
	}
	root := filepath.Join(dir, id, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep", "hostname", "mkdir", "ls", "kill", "true"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return err
		}
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args, Cwd: "/", Env: []string{"PATH=/bin"},
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			Namespaces:    []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"},
		},
	}
	if len(denySyscalls) > 0 {
		eperm := uint(1)
		spec.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64},
			Syscalls:      []specs.LinuxSyscall{{Names: denySyscalls, Action: specs.ActErrno, ErrnoRet: &eperm}},
		}
	}
	cb, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, id, "config.json"), cb, 0o644)
}
