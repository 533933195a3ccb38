package virtiofsd

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestArgs(t *testing.T) {
	c := Config{Socket: "/run/x/virtiofs.sock", Source: "/run/x/share", ExtraArgs: []string{"-o", "log_level=debug"}}
	want := "--socket-path=/run/x/virtiofs.sock -o source=/run/x/share -o cache=none -o no_xattr -o announce_submounts --thread-pool-size=1 -o log_level=debug"
	if got := strings.Join(c.Args(), " "); got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
	c = Config{Socket: "/s", Source: "/d", Cache: "auto", ThreadPoolSize: 4}
	if got := strings.Join(c.Args(), " "); !strings.Contains(got, "cache=auto") || !strings.Contains(got, "--thread-pool-size=4") {
		t.Errorf("args %s", got)
	}
	if c.binary() != DefaultBinary {
		t.Errorf("binary %s", c.binary())
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	ok := Config{Socket: dir + "/v.sock", Source: dir, Log: dir + "/log"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		edit  func(*Config)
		class func(error) bool
	}{
		"relative socket": {func(c *Config) { c.Socket = "v.sock" }, errdefs.IsInvalidArgument},
		"no log":          {func(c *Config) { c.Log = "" }, errdefs.IsInvalidArgument},
		"long socket":     {func(c *Config) { c.Socket = "/" + strings.Repeat("s", 110) }, errdefs.IsInvalidArgument},
		"comma":           {func(c *Config) { c.Source = dir + "/a,b" }, errdefs.IsInvalidArgument},
		"missing source":  {func(c *Config) { c.Source = dir + "/none" }, errdefs.IsNotFound},
		"file source":     {func(c *Config) { c.Source = file }, errdefs.IsInvalidArgument},
	} {
		cfg := ok
		c.edit(&cfg)
		if err := cfg.Validate(); !c.class(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Start(context.Background(), Config{Socket: "x"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("start with a bad config: %v", err)
	}
}

func TestLockFile(t *testing.T) {
	if got := RustLockFile("/tmp/vfx/v.sock"); got != "/tmp/vfx/v.sock.pid" {
		t.Errorf("rust lock file %q", got)
	}
	if got := LockFile("/tmp/vfx/v.sock"); got != "/var/run/virtiofsd/.tmp.vfx.v.sock.pid" {
		t.Errorf("lock file %s", got)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts, virtiofsd's namespaces)")
	}
}

// mountInfo is the mountinfo line of the mount at dir (empty: none).
func mountInfo(t *testing.T, pid, dir string) string {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == dir {
			line = sc.Text() // the last one is on top
		}
	}
	return line
}

func TestPrepareShare(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	os.MkdirAll(filepath.Join(share, "early"), 0o755)
	// a mount made before: still visible through the bind
	if err := unix.Mount("tmpfs", filepath.Join(share, "early"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(share, "early"), unix.MNT_DETACH)
	os.WriteFile(filepath.Join(share, "early", "f"), []byte("early"), 0o644)

	mounted, err := PrepareShare(share)
	if err != nil || !mounted {
		t.Fatalf("prepare: %v %v", mounted, err)
	}
	defer ReleaseShare(share)
	if l := mountInfo(t, "self", share); !strings.Contains(l, " shared:") {
		t.Errorf("share is not a shared mount point: %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(share, "early", "f")); string(b) != "early" {
		t.Errorf("earlier submount hidden by the bind: %q", b)
	}
	// idempotent: already a shared mount point
	if again, err := PrepareShare(share); err != nil || again {
		t.Errorf("second prepare: %v %v", again, err)
	}
	if err := ReleaseShare(share); err != nil {
		t.Fatal(err)
	}
	if l := mountInfo(t, "self", share); l != "" {
		t.Errorf("still mounted: %q", l)
	}
	if err := ReleaseShare(share); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// findBinary is virtiofsd, or a skip.
func findBinary(t *testing.T) string {
	t.Helper()
	b := os.Getenv("MAGNETAR_VIRTIOFSD")
	if b == "" {
		b = DefaultBinary
	}
	if _, err := os.Stat(b); err != nil {
		t.Skipf("no virtiofsd: %v (Debian's qemu-system-common 7.2 ships it)", err)
	}
	return b
}

// sandboxChild is the virtiofsd process that serves: the child virtiofsd
// forks into its new pid namespace once a peer connected.
func sandboxChild(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("virtiofsd %d forked no sandbox child", pid)
	return 0
}

// TestMountPropagation starts virtiofsd, connects to its socket as a VMM
// would (which makes it enter its sandbox: new mount namespace, pivot into
// the share), then mounts a tmpfs below the share on the host and reads a
// file of it through virtiofsd's root. Stop kills it, sandbox child
// first; Cleanup leaves nothing.
func TestMountPropagation(t *testing.T) {
	needRoot(t)
	bin := findBinary(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	dir, err := os.MkdirTemp("", "vfs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	share := filepath.Join(dir, "share")
	os.MkdirAll(filepath.Join(share, "late"), 0o755)
	os.WriteFile(filepath.Join(share, "marker"), []byte("share root"), 0o644)
	cfg := Config{ID: "test", Binary: bin, Socket: filepath.Join(dir, "v.sock"), Source: share, Log: filepath.Join(dir, "virtiofsd.log")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.KillWait(5 * time.Second)
		Cleanup(cfg.Socket)
		ReleaseShare(share)
	}()
	if !d.ShareMounted() || d.Socket() != cfg.Socket {
		t.Errorf("share mounted %v, socket %s", d.ShareMounted(), d.Socket())
	}
	if _, err := os.Stat(LockFile(cfg.Socket)); err != nil {
		t.Errorf("lock file: %v", err)
	}
	c, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	child := strconv.Itoa(sandboxChild(t, d.Pid()))
	root := "/proc/" + child + "/root"
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(root + "/marker"); string(b) == "share root" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("virtiofsd's root is not the share; log: %s", readFile(cfg.Log))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// the mount comes after virtiofsd entered its namespace
	if err := unix.Mount("tmpfs", filepath.Join(share, "late"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(share, "late", "hello"), []byte("mounted late"), 0o644)
	if b, err := os.ReadFile(root + "/late/hello"); string(b) != "mounted late" {
		t.Errorf("a mount made after virtiofsd started is not visible to it: %q %v\n(virtiofsd's view of it: %q)", b, err,
			mountInfo(t, child, "/late"))
	}

	// killed while its peer is connected, as a stuck virtiofsd is: its
	// sandbox child goes first and is reaped by virtiofsd, not left to us
	// (a child subreaper, as the daemon is) as a zombie
	if err := d.Stop(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	if b, err := os.ReadFile("/proc/" + child + "/stat"); err == nil {
		t.Errorf("virtiofsd's sandbox child left: %s", b)
	}
	// as the Rust virtiofsd would have left it
	if err := os.WriteFile(RustLockFile(cfg.Socket), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(cfg.Socket); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg.Socket, LockFile(cfg.Socket), RustLockFile(cfg.Socket)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
	if err := ReleaseShare(share); err != nil {
		t.Fatal(err)
	}
	if l := mountInfo(t, "self", share); l != "" {
		t.Errorf("share still mounted: %q", l)
	}
	if l := mountInfo(t, "self", filepath.Join(share, "late")); l != "" {
		t.Errorf("late mount left below the released share: %q", l)
	}
}

// TestStartFails: a virtiofsd that exits before listening is reported
// with its log, and nothing is left.
func TestStartFails(t *testing.T) {
	needRoot(t)
	bin := findBinary(t)
	dir, err := os.MkdirTemp("", "vfs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := Config{Binary: bin, Socket: filepath.Join(dir, "v.sock"), Source: dir, Log: filepath.Join(dir, "log"),
		ExtraArgs: []string{"-o", "cache=bogus"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Start(ctx, cfg); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "cache") {
		t.Errorf("bad option: %v", err)
	}
	if l := mountInfo(t, "self", dir); l != "" {
		t.Errorf("share left mounted: %q", l)
	}
	if _, err := os.Lstat(cfg.Socket); err == nil {
		t.Error("socket left")
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestListening tells a bound socket from a listening one: virtiofsd's
// socket file exists from bind on, and a VMM connecting before listen is
// refused (a flaky "connection refused" at pod start).
func TestListening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if listening(os.Getpid(), path) {
		t.Error("a socket only bound is reported listening")
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	if !listening(os.Getpid(), path) {
		t.Error("a listening socket is not reported")
	}
	if listening(os.Getpid(), path+"x") {
		t.Error("another path is reported listening")
	}
}
