package nsutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to create, mount and enter namespaces")
	}
}

// mountsUnder lists the mount points in /proc/self/mountinfo below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func uname(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Nodename[:])
}

func readSys(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// holdNetNS creates a network namespace held by a bind mount, the same way
// Create holds ipc and uts, without `ip netns`.
func holdNetNS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "net")
	if err := os.WriteFile(p, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("/proc/thread-self/ns/net", p, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("hold netns: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	})
	return p
}

func TestCreateHoldRelease(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pod", "ns")
	host := uname(t)
	const name = "magnetar-nsutil-test"
	if host == name {
		t.Fatal("host already has the test hostname")
	}
	held, err := Create(ctx, dir, []Kind{KindIPC, KindUTS, KindNet}, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Release(dir) })
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: %v %v", st.Mode(), err)
	}
	// a fresh net namespace: loopback only (the test's own has more)
	var links int
	if err := Do(held[KindNet], KindNet, func() error {
		ifs, err := net.Interfaces()
		links = len(ifs)
		return err
	}); err != nil || links != 1 {
		t.Errorf("held net namespace has %d links (%v), want loopback only", links, err)
	}
	for _, k := range []Kind{KindIPC, KindUTS, KindNet} {
		if held[k] != filepath.Join(dir, string(k)) {
			t.Errorf("held[%s] = %q", k, held[k])
		}
		if ok, err := IsNSFile(held[k], k); !ok || err != nil {
			t.Fatalf("%s not held: %v %v", k, ok, err)
		}
	}
	if ok, _ := IsNSFile(held[KindIPC], KindUTS); ok {
		t.Error("ipc file reported as uts")
	}
	if got := len(mountsUnder(t, dir)); got != 3 {
		t.Errorf("%d mounts under %s, want 3", got, dir)
	}

	// UTS: the hostname is set inside and the host's is unchanged.
	var inside string
	if err := Do(held[KindUTS], KindUTS, func() error { inside = uname(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != name {
		t.Errorf("hostname inside = %q, want %q", inside, name)
	}
	if got := uname(t); got != host {
		t.Errorf("host hostname changed to %q", got)
	}

	// IPC: a System V segment made inside is invisible from the host.
	key := 0x4d470000 | os.Getpid()&0xffff
	var keyHex string
	err = Do(held[KindIPC], KindIPC, func() error {
		id, err := unix.SysvShmGet(key, 4096, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
		if err != nil {
			return fmt.Errorf("shmget: %w", err)
		}
		keyHex = strconv.Itoa(key)
		if !strings.Contains(readSys(t, "/proc/sysvipc/shm"), " "+keyHex+" "+strconv.Itoa(id)+" ") {
			return errors.New("segment not listed inside its own namespace")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(readSys(t, "/proc/sysvipc/shm"), " "+keyHex+" ") {
		t.Error("segment created in the pod's IPC namespace is visible on the host")
	}

	// A second Create over the same files is refused, touching nothing.
	if _, err := Create(ctx, dir, []Kind{KindIPC}, ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Create = %v, want AlreadyExists", err)
	}
	if ok, _ := IsNSFile(held[KindIPC], KindIPC); !ok {
		t.Error("refused Create released the held ipc namespace")
	}

	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left after Release: %v", m)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir left after Release: %v", err)
	}
	if err := Release(dir); err != nil {
		t.Errorf("second Release = %v", err)
	}
}

func TestCreateRollback(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	boom := errors.New("injected failure")
	testHookAfterMount = func(k Kind) error {
		if k == KindUTS {
			return boom
		}
		return nil
	}
	t.Cleanup(func() { testHookAfterMount = nil })

	// Directory made by Create: all gone.
	base := t.TempDir()
	dir := filepath.Join(base, "a", "ns")
	if _, err := Create(ctx, dir, []Kind{KindIPC, KindUTS}, "h"); !errors.Is(err, boom) {
		t.Fatalf("Create = %v, want the injected failure", err)
	}
	if m := mountsUnder(t, base); len(m) != 0 {
		t.Errorf("mounts left after failed Create: %v", m)
	}
	if _, err := os.Stat(filepath.Join(base, "a")); !os.IsNotExist(err) {
		t.Errorf("directories left after failed Create: %v", err)
	}

	// Existing directory: kept, with what was in it.
	dir = filepath.Join(base, "existing")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, dir, []Kind{KindIPC, KindUTS}, ""); !errors.Is(err, boom) {
		t.Fatalf("Create = %v, want the injected failure", err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left after failed Create: %v", m)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "keep" {
		t.Errorf("dir after failed Create holds %v, want only keep", entries)
	}
}

// TestCreateOnSharedMount holds namespaces in a directory on a mount with
// shared propagation (as /run often is under systemd): binding nsfs files
// there must work and Release must leave no mount behind in the peer group.
func TestCreateOnSharedMount(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(base, unix.MNT_DETACH) })
	if err := unix.Mount("", base, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	// A second view of the same shared mount, in the same peer group.
	peer := t.TempDir()
	if err := unix.Mount(base, peer, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(peer, unix.MNT_DETACH) })

	dir := filepath.Join(base, "ns")
	held, err := Create(context.Background(), dir, []Kind{KindIPC, KindUTS}, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := IsNSFile(filepath.Join(peer, "ns", "uts"), KindUTS); !ok || err != nil {
		t.Errorf("mount did not propagate to the peer: %v %v", ok, err)
	}
	if ok, _ := IsNSFile(held[KindUTS], KindUTS); !ok {
		t.Fatal("uts not held")
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if m := append(mountsUnder(t, dir), mountsUnder(t, filepath.Join(peer, "ns"))...); len(m) != 0 {
		t.Errorf("mounts left after Release: %v", m)
	}
}

func TestApplySysctlsInNamespaces(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	// The hostname is ignored without a new uts namespace.
	held, err := Create(context.Background(), dir, []Kind{KindIPC}, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Release(dir) })
	if _, err := os.Stat(filepath.Join(dir, "uts")); !os.IsNotExist(err) {
		t.Errorf("uts file made without being asked for: %v", err)
	}
	netns := holdNetNS(t)

	const (
		fwd    = "/proc/sys/net/ipv4/ip_forward"
		ports  = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
		shmmax = "/proc/sys/kernel/shmmax"
		sem    = "/proc/sys/kernel/sem"
	)
	hostFwd, hostPorts, hostShm, hostSem := readSys(t, fwd), readSys(t, ports), readSys(t, shmmax), readSys(t, sem)
	wantFwd := "1"
	if hostFwd == "1" {
		wantFwd = "0"
	}
	wantPorts := "81"
	if hostPorts == wantPorts {
		wantPorts = "82"
	}
	wantShm := "123456789"
	wantSem := "251 32001 101 129"

	err = ApplySysctls(netns, held[KindIPC], map[string]string{
		"net.ipv4.ip_forward":                 wantFwd,
		"net/ipv4/ip_unprivileged_port_start": wantPorts,
		"kernel.shmmax":                       wantShm,
		"kernel.sem":                          wantSem,
	})
	if err != nil {
		t.Fatal(err)
	}
	inNS := func(path string, kind Kind, file string) string {
		var v string
		if err := Do(path, kind, func() error { v = readSys(t, file); return nil }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		path string
		kind Kind
		file string
		want string
		host string
	}{
		{netns, KindNet, fwd, wantFwd, hostFwd},
		{netns, KindNet, ports, wantPorts, hostPorts},
		{held[KindIPC], KindIPC, shmmax, wantShm, hostShm},
		{held[KindIPC], KindIPC, sem, wantSem, hostSem},
	} {
		if got := inNS(c.path, c.kind, c.file); got != c.want {
			t.Errorf("%s inside = %q, want %q", c.file, got, c.want)
		}
		if got := readSys(t, c.file); got != c.host {
			t.Errorf("host %s changed: %q, was %q", c.file, got, c.host)
		}
	}

	// An unknown key: refused, and nothing else written.
	err = ApplySysctls(netns, held[KindIPC], map[string]string{
		"kernel.shmmax":              "987654321",
		"net.ipv4.no_such_knob_here": "1",
	})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "net.ipv4.no_such_knob_here") {
		t.Errorf("unknown key = %v, want InvalidArgument naming it", err)
	}
	if got := inNS(held[KindIPC], KindIPC, shmmax); got != wantShm {
		t.Errorf("shmmax written (%q) although a key was refused", got)
	}

	// A value the kernel rejects: what was written before it is restored.
	err = ApplySysctls(netns, held[KindIPC], map[string]string{
		"kernel.shmmax":       "987654321",
		"net.ipv4.ip_forward": "not-a-number",
	})
	if err == nil {
		t.Fatal("bad value accepted")
	}
	if got := inNS(held[KindIPC], KindIPC, shmmax); got != wantShm {
		t.Errorf("shmmax = %q after a failed apply, want restored %q", got, wantShm)
	}
	if got := readSys(t, shmmax); got != hostShm {
		t.Errorf("host shmmax changed: %q", got)
	}
}

func TestDoRestoresAndPropagatesPanics(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	held, err := Create(context.Background(), dir, []Kind{KindUTS}, "do-panic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Release(dir) })
	host := uname(t)

	// A wrong kind is refused by the kernel.
	if err := Do(held[KindUTS], KindIPC, func() error { return nil }); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Do with the wrong kind = %v, want InvalidArgument", err)
	}
	want := errors.New("from fn")
	if err := Do(held[KindUTS], KindUTS, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do = %v, want fn's error", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		_ = Do(held[KindUTS], KindUTS, func() error { panic("boom") })
	}()
	// Threads handed back to the scheduler are in the host namespace.
	for i := 0; i < 50; i++ {
		if err := Do(held[KindUTS], KindUTS, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if got := uname(t); got != host {
			t.Fatalf("a thread came back in the pod's uts namespace (%q)", got)
		}
	}
}

// TestHoldAndHoldOwner: a user namespace that owns a network namespace, and
// an IPC namespace of a process, stay held after the process is gone;
// the host's network namespace has no pod user namespace; Release unmounts
// them all.
func TestHoldAndHoldOwner(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var userIno, ipcIno uint64
	for p, ino := range map[string]*uint64{"user": &userIno, "ipc": &ipcIno} {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, p), &st); err != nil {
			t.Fatal(err)
		}
		*ino = st.Ino
	}
	dir := filepath.Join(t.TempDir(), "ns")
	u, err := HoldOwner(dir, fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	i, err := Hold(dir, KindIPC, fmt.Sprintf("/proc/%d/ns/ipc", pid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(dir, KindUTS, fmt.Sprintf("/proc/%d/ns/ipc", pid)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("an ipc namespace held as uts: %v", err)
	}
	if _, err := Hold(dir, KindIPC, fmt.Sprintf("/proc/%d/ns/ipc", pid)); !errdefs.IsAlreadyExists(err) {
		t.Errorf("held twice: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for p, ino := range map[string]uint64{u: userIno, i: ipcIno} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Ino != ino {
			t.Errorf("%s: inode %d (%v), want %d: not the process's namespace", p, st.Ino, err, ino)
		}
	}
	if _, err := HoldOwner(t.TempDir(), "/proc/self/ns/net"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("the host's netns: %v, want InvalidArgument", err)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, filepath.Dir(dir)); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}
