package virtiofsd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// Defaults of Config.
const (
	// DefaultBinary is Debian's C virtiofsd (qemu-system-common 7.2).
	DefaultBinary = "/usr/lib/qemu/virtiofsd"
	// DefaultCache is virtiofsd's -o cache= (see the package doc).
	DefaultCache = "none"
	// DefaultThreadPoolSize is virtiofsd's --thread-pool-size.
	DefaultThreadPoolSize = 1
	// DefaultSocketTimeout bounds the wait for the socket when Start's
	// context has no deadline.
	DefaultSocketTimeout = 10 * time.Second
)

// lockDir is where the C virtiofsd keeps a lock file per socket
// (qemu_get_local_state_dir() + "/run/virtiofsd").
const lockDir = "/var/run/virtiofsd"

// Config is one virtiofsd.
type Config struct {
	// ID is the sandbox id (logs).
	ID string
	// Binary is virtiofsd (DefaultBinary when empty).
	Binary string
	// Socket is the vhost-user socket the VMM connects to (absolute).
	Socket string
	// Source is the shared directory (absolute, an existing directory).
	Source string
	// Log receives virtiofsd's stdout and stderr.
	Log string
	// Cgroup, when set, is the cgroups path virtiofsd is moved to.
	Cgroup string
	// Cache is -o cache= (DefaultCache when empty).
	Cache string
	// ThreadPoolSize is --thread-pool-size (DefaultThreadPoolSize when 0;
	// pass "--thread-pool-size=0" in ExtraArgs for none).
	ThreadPoolSize int
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

func (c Config) binary() string {
	if c.Binary == "" {
		return DefaultBinary
	}
	return c.Binary
}

// Args is virtiofsd's command line for c, without the binary.
func (c Config) Args() []string {
	cache, pool := c.Cache, c.ThreadPoolSize
	if cache == "" {
		cache = DefaultCache
	}
	if pool == 0 {
		pool = DefaultThreadPoolSize
	}
	a := []string{"--socket-path=" + c.Socket, "-o", "source=" + c.Source, "-o", "cache=" + cache,
		"-o", "no_xattr", "-o", "announce_submounts", "--thread-pool-size=" + strconv.Itoa(pool)}
	return append(a, c.ExtraArgs...)
}

// Validate checks c before anything is started: absolute paths, a socket
// path that fits a sockaddr_un, no comma in the source (virtiofsd's -o
// list separator), and an existing source directory (errdefs.ErrNotFound
// otherwise).
func (c Config) Validate() error {
	for _, p := range []struct{ name, v string }{{"socket", c.Socket}, {"source", c.Source}, {"log", c.Log}} {
		if p.v == "" || !filepath.IsAbs(p.v) {
			return fmt.Errorf("virtiofsd %s %q: must be an absolute path: %w", p.name, p.v, errdefs.ErrInvalidArgument)
		}
	}
	if len(c.Socket) > 107 {
		return fmt.Errorf("virtiofsd socket %q: longer than the 107 bytes of a unix socket path: %w", c.Socket, errdefs.ErrInvalidArgument)
	}
	if strings.Contains(c.Source, ",") {
		return fmt.Errorf("virtiofsd source %q: a comma cannot be passed in -o source=: %w", c.Source, errdefs.ErrInvalidArgument)
	}
	fi, err := os.Stat(c.Source)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("virtiofsd source %s: %w", c.Source, errdefs.ErrNotFound)
	case err != nil:
		return fmt.Errorf("virtiofsd source: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("virtiofsd source %s: not a directory: %w", c.Source, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Daemon is one running (or exited) virtiofsd.
type Daemon struct {
	*hostproc.Process
	cfg          Config
	shareMounted bool
}

// Start prepares the share (PrepareShare), starts virtiofsd (see the
// package doc) and returns once it listens on its socket, bounded by ctx
// (DefaultSocketTimeout without a deadline). When virtiofsd exits first,
// the error carries its log. On error nothing is left: no process, no
// socket, the share's bind undone.
func Start(ctx context.Context, cfg Config) (d *Daemon, retErr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSocketTimeout)
		defer cancel()
	}
	mounted, err := PrepareShare(cfg.Source)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil && mounted {
			if err := ReleaseShare(cfg.Source); err != nil {
				log.G(ctx).WithError(err).Warn("virtiofsd: releasing the share")
			}
		}
	}()
	// a stale socket would pass for the new one
	if err := Cleanup(cfg.Socket); err != nil {
		return nil, err
	}
	p, err := hostproc.Start(ctx, hostproc.Spec{Name: "virtiofsd", Path: cfg.binary(), Args: cfg.Args(), Log: cfg.Log, Cgroup: cfg.Cgroup})
	if err != nil {
		return nil, err
	}
	d = &Daemon{Process: p, cfg: cfg, shareMounted: mounted}
	if err := d.waitSocket(ctx); err != nil {
		if kerr := p.KillWait(hostproc.DefaultKillWait); kerr != nil {
			err = errors.Join(err, kerr)
		}
		_ = Cleanup(cfg.Socket)
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"sandbox_id": cfg.ID, "pid": p.Pid()}).Debug("virtiofsd listening")
	return d, nil
}

// waitSocket polls until virtiofsd listens on its socket, it exits or ctx
// ends. The socket file exists from bind(2) on, before listen(2): a VMM
// connecting in between is refused, so the file alone is not enough, and
// a probe connection cannot be used (virtiofsd serves one frontend and
// ends when it hangs up).
func (d *Daemon) waitSocket(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if fi, err := os.Stat(d.cfg.Socket); err == nil && fi.Mode()&fs.ModeSocket != 0 && listening(d.Pid(), d.cfg.Socket) {
			return nil
		}
		select {
		case <-d.Done():
			return fmt.Errorf("virtiofsd exited before listening (%s): %s: %w", d.ExitStatus(),
				hostproc.Tail(d.cfg.Log, 10), errdefs.ErrFailedPrecondition)
		case <-ctx.Done():
			return fmt.Errorf("virtiofsd: no socket %s: %w (log: %s)", d.cfg.Socket, ctx.Err(), hostproc.Tail(d.cfg.Log, 10))
		case <-t.C:
		}
	}
}

// Recover is the Daemon of a virtiofsd a previous daemon started with cfg
// (hostproc.Recover: already Done when it is gone).
func Recover(cfg Config, id hostproc.ID, shareMounted bool) *Daemon {
	return &Daemon{Process: hostproc.Recover("virtiofsd", id), cfg: cfg, shareMounted: shareMounted}
}

// ShareMounted reports whether Start bind-mounted the share onto itself
// (then ReleaseShare undoes it once the VM is gone).
func (d *Daemon) ShareMounted() bool { return d.shareMounted }

// Socket is the vhost-user socket.
func (d *Daemon) Socket() string { return d.cfg.Socket }

// Stop waits up to grace for virtiofsd to end by itself (it does when its
// VMM disconnects), then kills it. It returns once virtiofsd has exited.
func (d *Daemon) Stop(grace time.Duration) error {
	select {
	case <-d.Done():
		return nil
	case <-time.After(grace):
	}
	return d.KillWait(hostproc.DefaultKillWait)
}

// Cleanup removes what a virtiofsd on socket leaves: the socket and its
// lock file (the C daemon's or the Rust one's). Missing files are fine.
func Cleanup(socket string) error {
	var errs []error
	for _, p := range []string{socket, LockFile(socket), RustLockFile(socket)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LockFile is the lock (pid) file the C virtiofsd keeps for socket.
func LockFile(socket string) string {
	return filepath.Join(lockDir, strings.ReplaceAll(socket, "/", ".")+".pid")
}

// RustLockFile is the lock (pid) file the Rust virtiofsd (virtio-fs/virtiofsd,
// /usr/libexec/virtiofsd) keeps for socket: next to it.
func RustLockFile(socket string) string { return socket + ".pid" }

// PrepareShare makes dir a mount point with shared propagation, so that
// mounts made below it later reach virtiofsd (see the package doc). When
// dir is not a mount point it is bind-mounted onto itself (recursively),
// made private, then shared, and mounted is true; a mount point is only
// made shared (a no-op when it is already), and mounted is false.
func PrepareShare(dir string) (mounted bool, err error) {
	dir = filepath.Clean(dir)
	table, err := mount.Self()
	if err != nil {
		return false, err
	}
	isMount := false
	for _, m := range table {
		if m.Mountpoint == dir {
			isMount = true
			break
		}
	}
	if !isMount {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return false, fmt.Errorf("share %s: bind onto itself: %w", dir, err)
		}
		// out of the parent's peer group first: a new group of its own
		if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			return false, fmt.Errorf("share %s: make private: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		if !isMount {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
		return false, fmt.Errorf("share %s: make shared: %w", dir, err)
	}
	return !isMount, nil
}

// ReleaseShare undoes PrepareShare's bind of dir (lazily: mounts still
// below it go with it, and a later os.RemoveAll of dir cannot descend into
// them). Not mounted is fine.
func ReleaseShare(dir string) error {
	err := unix.Unmount(filepath.Clean(dir), unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("release share %s: %w", dir, err)
}

// soAcceptCon is the flag /proc/net/unix shows for a listening socket
// (__SO_ACCEPTCON).
const soAcceptCon = 0x10000

// listening reports whether a unix socket bound to path listens in the
// network namespace of pid (/proc/<pid>/net/unix: Num RefCount Protocol
// Flags Type St Inode Path).
func listening(pid int, path string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/unix")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || strings.Join(f[7:], " ") != path {
			continue
		}
		if flags, err := strconv.ParseUint(f[3], 16, 32); err == nil && flags&soAcceptCon != 0 {
			return true
		}
	}
	return false
}
