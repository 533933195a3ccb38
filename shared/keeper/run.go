package keeper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/fdstore"
	"github.com/magnetar-runtime/magnetar/shared/store"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// DefaultIdleTimeout is how long a keeper lives with neither a daemon behind
// it nor a containerd connection: the same as the default MaxWait, the one
// bound of this package on how long the daemon may be away. See the package
// documentation for why this value.
const DefaultIdleTimeout = defaultMaxWait

// checkInterval is how often Run looks whether its keeper was replaced or is
// idle. It is cheap (two stats, a small read, at most two dials).
const checkInterval = time.Second

// probeTimeout bounds the dial that tells whether a daemon serves behind the
// keeper.
const probeTimeout = time.Second

// Config is what one keeper process serves, and for how long.
type Config struct {
	// TaskSocket is the Task API socket containerd dials; TaskBackend is the
	// daemon's private socket behind it (ttrpc, bridged frame by frame).
	TaskSocket, TaskBackend string
	// APISocket is the Sandbox API socket containerd's proxy plugin dials;
	// APIBackend is the daemon's private socket behind it (relayed as a
	// byte stream).
	APISocket, APIBackend string
	// PidFile is written with the keeper's pid once its sockets listen, and
	// watched: a file naming another process means a newer keeper took the
	// sockets over. Empty: neither written nor watched.
	PidFile string
	// FDSocket is the socket of the descriptor store (shared/fdstore) the
	// daemon holds containerd's stdio FIFOs in, across its restarts. Empty:
	// no store (the command line of an older daemon).
	FDSocket string
	Options
	// IdleTimeout bounds how long the keeper lives with neither a daemon
	// behind it nor a containerd connection. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration

	checkEvery time.Duration // checkInterval; tests shorten it
}

// Run is a keeper process's main. It listens on the task and API sockets
// (and the fd store's), writes the pid file, and relays every connection to
// the daemon behind it until ctx ends or the keeper has outlived its
// purpose:
//
//   - replaced: a socket path is gone or is another socket, or the pid file
//     names another process. Run stops accepting at once (and leaves the
//     paths, now the newer keeper's, alone), closes the descriptors its
//     store holds, and returns when the last connection it holds has ended;
//   - idle: no daemon answered on either backend socket and no containerd
//     connection was open for IdleTimeout. Held descriptors do not count.
//
// Except when replaced, Run removes its sockets and pid file when it
// returns; the descriptors held are closed in every case.
func Run(ctx context.Context, c Config) error {
	if c.MaxWait <= 0 {
		c.MaxWait = defaultMaxWait
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.checkEvery <= 0 {
		c.checkEvery = checkInterval
	}
	k := &keeperProc{cfg: c, fds: fdstore.NewStore(fdstore.MaxFDs)}
	defer k.fds.Close()
	if err := k.listen(); err != nil {
		k.closeListeners()
		k.release()
		return err
	}
	errc := make(chan error, len(k.socks))
	go func() { errc <- serveFrames(ctx, k.socks[0].l, c.TaskBackend, c.Options, &k.act) }()
	go func() { errc <- serveStream(ctx, k.socks[1].l, c.APIBackend, c.Options, &k.act) }()
	if len(k.socks) > 2 {
		go func() { errc <- serveFDs(ctx, k.socks[2].l, k.fds) }()
	}
	return k.watch(ctx, errc)
}

// ownedSocket is a socket the keeper listens on, with the file it bound:
// the path is the keeper's only while it still names that file.
type ownedSocket struct {
	path string
	fi   os.FileInfo
	l    net.Listener
}

type keeperProc struct {
	cfg   Config
	socks []ownedSocket // task, API, and the fd store's with FDSocket
	act   activity      // containerd's connections
	fds   *fdstore.Store
}

func (k *keeperProc) listen() error {
	paths := []string{k.cfg.TaskSocket, k.cfg.APISocket}
	if k.cfg.FDSocket != "" {
		paths = append(paths, k.cfg.FDSocket)
	}
	for _, path := range paths {
		l, err := transport.Listen(path)
		if err != nil {
			return err
		}
		// Go unlinks a unix socket's path when its listener closes; once
		// replaced, that path is the newer keeper's socket.
		if ul, ok := l.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		// The bound socket holds its inode, so no later socket at this path
		// can have the same device and inode while the keeper lives.
		fi, err := os.Stat(path)
		if err != nil {
			l.Close()
			return fmt.Errorf("keeper: %w", err)
		}
		k.socks = append(k.socks, ownedSocket{path: path, fi: fi, l: l})
	}
	if k.cfg.PidFile == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(k.cfg.PidFile), 0o700); err != nil {
		return fmt.Errorf("keeper: pid file directory: %w", err)
	}
	return store.WriteFileAtomic(k.cfg.PidFile, []byte(strconv.Itoa(os.Getpid())), 0o600)
}

// watch returns when ctx ends, or when the keeper has outlived its purpose.
func (k *keeperProc) watch(ctx context.Context, errc <-chan error) error {
	tick := time.NewTicker(k.cfg.checkEvery)
	defer tick.Stop()
	replaced := ""
	lastActive := time.Now()
	for {
		select {
		case <-ctx.Done():
			k.closeListeners()
			if replaced == "" {
				k.release()
			}
			return nil
		case err := <-errc:
			if err == nil {
				continue // a listener closed: ctx ended or the keeper was replaced
			}
			k.closeListeners()
			if replaced == "" {
				k.release()
			}
			return fmt.Errorf("keeper: %w", err)
		case <-tick.C:
		}
		if replaced == "" {
			if replaced = k.replacedBy(); replaced != "" {
				log.G(ctx).WithFields(log.Fields{"reason": replaced, "connections": k.act.open.Load(), "descriptors": k.fds.Len()}).
					Info("keeper: replaced by a newer keeper, no longer accepting, closing the descriptors held; exiting once the connections held end")
				k.closeListeners()
				// The daemon holds in the newer keeper now; what this one
				// holds would keep containerd's readers from the EOF of
				// outputs that end, as the daemon releases them there.
				k.fds.Close()
			}
		}
		if replaced != "" {
			if k.act.open.Load() == 0 {
				log.G(ctx).Info("keeper: replaced and holding no connection, exiting")
				return nil
			}
			continue
		}
		now := time.Now()
		if k.act.open.Load() > 0 || k.daemonServes(ctx) {
			lastActive = now
			continue
		}
		if last := time.Unix(0, k.act.last.Load()); last.After(lastActive) {
			lastActive = last
		}
		if now.Sub(lastActive) >= k.cfg.IdleTimeout {
			log.G(ctx).WithField("idle_timeout", k.cfg.IdleTimeout).
				Info("keeper: neither a daemon nor a containerd connection within the idle bound, exiting")
			k.closeListeners()
			k.release()
			return nil
		}
	}
}

// replacedBy says why the keeper's sockets are no longer its own, or "".
func (k *keeperProc) replacedBy() string {
	for _, s := range k.socks {
		fi, err := os.Stat(s.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return s.path + " is gone"
		case err != nil:
			continue // cannot tell: keep serving
		case !os.SameFile(fi, s.fi):
			return s.path + " is another socket"
		}
	}
	if k.cfg.PidFile != "" {
		// A missing or unreadable file alone says nothing: the sockets do.
		if pid, ok := readPid(k.cfg.PidFile); ok && pid != os.Getpid() {
			return fmt.Sprintf("%s names process %d", k.cfg.PidFile, pid)
		}
	}
	return ""
}

// daemonServes tells whether a daemon listens on either backend socket.
func (k *keeperProc) daemonServes(ctx context.Context) bool {
	for _, path := range []string{k.cfg.TaskBackend, k.cfg.APIBackend} {
		if path == "" {
			continue
		}
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, probeTimeout)
		c, err := d.DialContext(dctx, "unix", path)
		cancel()
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

func (k *keeperProc) closeListeners() {
	for _, s := range k.socks {
		s.l.Close()
	}
}

// release removes the sockets and the pid file that are still the keeper's.
func (k *keeperProc) release() {
	for _, s := range k.socks {
		if fi, err := os.Stat(s.path); err == nil && os.SameFile(fi, s.fi) {
			_ = os.Remove(s.path)
		}
	}
	if k.cfg.PidFile != "" {
		if pid, ok := readPid(k.cfg.PidFile); ok && pid == os.Getpid() {
			_ = os.Remove(k.cfg.PidFile)
		}
	}
}

func readPid(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
