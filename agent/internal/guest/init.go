package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type mnt struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var basicMounts = []mnt{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

func mountOne(m mnt) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// MountBasics mounts proc, sys, dev, dev/pts, dev/shm, dev/mqueue, run and
// tmp, then the cgroups. It goes on after a failure and returns every error.
func MountBasics() []error {
	var errs []error
	for _, m := range basicMounts {
		if err := mountOne(m); err != nil {
			errs = append(errs, err)
		}
	}
	// /dev/ptmx of the devpts instance, /dev/fd and friends
	for link, to := range map[string]string{"/dev/ptmx": "pts/ptmx", "/dev/fd": "/proc/self/fd",
		"/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		if cur, err := os.Readlink(link); err == nil && cur == to {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(to, link); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := MountCgroups(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// MountCgroups mounts cgroup2 on /sys/fs/cgroup when the kernel has it
// (and enables every controller for children), otherwise one v1 hierarchy
// per enabled controller under a tmpfs there. It returns "cgroup2" or
// "cgroup1".
func MountCgroups() (string, error) {
	const root = "/sys/fs/cgroup"
	if hasFS("cgroup2") {
		if err := mountOne(mnt{"cgroup2", root, "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""}); err != nil {
			return "", err
		}
		if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
			var plus []string
			for _, c := range strings.Fields(string(b)) {
				plus = append(plus, "+"+c)
			}
			if len(plus) > 0 {
				_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(strings.Join(plus, " ")), 0)
			}
		}
		return "cgroup2", nil
	}
	if err := mountOne(mnt{"tmpfs", root, "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0755"}); err != nil {
		return "", err
	}
	f, err := os.Open("/proc/cgroups")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || strings.HasPrefix(fs[0], "#") || fs[3] != "1" {
			continue
		}
		if err := mountOne(mnt{"cgroup", filepath.Join(root, fs[0]), "cgroup", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, fs[0]}); err != nil {
			errs = append(errs, err)
		}
	}
	return "cgroup1", errors.Join(errs...)
}

func hasFS(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// ModuleTime is how long one module took to load (finit_module runs its
// init, so a driver's probing counts).
type ModuleTime struct {
	Name string
	Took time.Duration
}

// LoadModules loads the modules listed in dir/load, in order, with
// finit_module(2). A module that is already there is fine; a failure is
// reported and the rest are still tried. No load file: nothing to do.
func LoadModules(dir string) (loaded []string, errs []error) {
	loaded, _, errs = LoadModulesTimed(dir)
	return loaded, errs
}

// LoadModulesTimed is LoadModules that also reports each module's time.
func LoadModulesTimed(dir string) (loaded []string, times []ModuleTime, errs []error) {
	return LoadModulesOf(dir, nil)
}

// LoadModulesOf loads the modules of dir/load for which want is true (all
// with a nil want), in the file's order, and reports each one's time.
func LoadModulesOf(dir string, want func(name string) bool) (loaded []string, times []ModuleTime, errs []error) {
	b, err := os.ReadFile(filepath.Join(dir, "load"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, []error{err}
	}
	for _, l := range strings.Split(string(b), "\n") {
		name := strings.TrimSpace(l)
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if strings.Contains(name, "/") || name == "." || name == ".." {
			errs = append(errs, fmt.Errorf("module %q: a file name in %s expected", name, dir))
			continue
		}
		if want != nil && !want(name) {
			continue
		}
		start := time.Now()
		err := loadModule(filepath.Join(dir, name))
		times = append(times, ModuleTime{Name: name, Took: time.Since(start)})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		loaded = append(loaded, name)
	}
	return loaded, times, errs
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("module %s: %w", p, err)
	}
	defer f.Close()
	flags := 0
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ext) {
			flags |= unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("module %s: finit_module: %w", filepath.Base(p), err)
	}
	return nil
}

// MountShare mounts the host share at target, retrying for up to wait while
// the device is not there yet.
func MountShare(s Share, target string, wait time.Duration) error {
	if s.Kind == "none" {
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	fstype, data := "virtiofs", ""
	if s.Kind == "9p" {
		fstype, data = "9p", "trans=virtio,version=9p2000.L,msize=262144,cache=none"
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Mount(s.Tag, target, fstype, unix.MS_NODEV, data)
		if err == nil || errors.Is(err, unix.EBUSY) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount %s tag %q on %s: %w (module loaded? device attached?)", fstype, s.Tag, target, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FindSerialPort returns the device of the virtio-serial port called name:
// /sys/class/virtio-ports/vportNpM/name holds it, the device is /dev/vportNpM.
func FindSerialPort(sysRoot, devRoot, name string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(sysRoot, "class/virtio-ports/vport*"))
	var seen []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		if err != nil {
			continue
		}
		n := strings.TrimSpace(string(b))
		seen = append(seen, n)
		if n == name {
			return filepath.Join(devRoot, filepath.Base(d)), nil
		}
	}
	return "", fmt.Errorf("virtio-serial port %q: not found (ports: %q): %w", name, seen, os.ErrNotExist)
}

// PowerOff syncs and powers the VM off. It never returns: as PID 1 the
// agent must not exit (the kernel would panic), so if power-off fails it
// blocks forever; outside PID 1 (development) it exits.
func PowerOff() {
	unix.Sync()
	if os.Getpid() != 1 {
		os.Exit(1)
	}
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stderr, "magnetar-agent: power off failed: %v; halting here\n", err)
	select {}
}

// BootModules says which modules of the image the guest needs before it can
// serve the host: the virtio bus it boots on (MMIO, and PCI when the
// machine has a PCI bus), the agent's transport, the share, and the network
// (the host sets it up right after connecting). The others (block devices,
// file systems for later use) are loaded in the background once the agent
// serves, off the pod's start path: every module costs tens of
// milliseconds under emulation.
func BootModules(c Cmdline, pci bool) func(name string) bool {
	need := map[string]bool{"virtio_ring": true, "virtio": true, "virtio_mmio": true,
		"failover": true, "net_failover": true, "virtio_net": true}
	if pci {
		for _, m := range []string{"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"} {
			need[m] = true
		}
	}
	switch c.Transport.Kind {
	case "vsock":
		for _, m := range []string{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"} {
			need[m] = true
		}
	default:
		need["virtio_console"] = true
	}
	switch c.Share.Kind {
	case "virtiofs":
		need["fuse"], need["virtiofs"] = true, true
	case "9p":
		for _, m := range []string{"9pnet", "9pnet_virtio", "netfs", "fscache", "9p"} {
			need[m] = true
		}
	}
	return func(file string) bool {
		name := file
		for _, ext := range []string{".xz", ".zst", ".ko"} {
			name = strings.TrimSuffix(name, ext)
		}
		return need[strings.ReplaceAll(name, "-", "_")]
	}
}
