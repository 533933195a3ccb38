package vmtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// busybox is Debian's busybox-static (statically linked: it runs in the
// guest and in a container without any library).
const busybox = "/bin/busybox"

// makeBundle writes share/<id>/{config.json,rootfs/} for a busybox container
// running args, and returns the bundle's path inside the guest. The container
// has its own pid, mount and ipc namespaces and shares the VM's uts and
// network namespaces (the VM is the pod), so Setup's hostname and sysctls are
// what it sees. seccomp denies mkdir(2) and mkdirat(2) with EPERM, to show
// that the guest's runc enforces a profile (a syscall runc's own init does
// not need after loading the filter: denying getcwd, say, fails runc init).
func makeBundle(t *testing.T, share, id string, args []string) string {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("no %s (apt-get install busybox-static): %v", busybox, err)
	}
	root := filepath.Join(share, id, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep", "hostname", "mkdir", "ls", "kill"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
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
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}},
			Seccomp: &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Architectures: []specs.Arch{specs.ArchX86_64},
				Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1))}},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"},
		},
	}
	cb, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, id, "config.json"), cb, 0o644); err != nil {
		t.Fatal(err)
	}
	return guestShare + "/" + id
}

func ptr[T any](v T) *T { return &v }
