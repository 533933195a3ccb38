package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/agent/internal/guest"
	"github.com/magnetar-runtime/magnetar/agent/internal/reaper"
	"github.com/magnetar-runtime/magnetar/agent/internal/runcbe"
	"github.com/magnetar-runtime/magnetar/agent/internal/service"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// Paths under /run/magnetar (see doc.go).
const (
	stateDir = "/run/magnetar/task"
	runcRoot = "/run/magnetar/runc"
	ctrDir   = "/run/magnetar/ctr"
	modDir   = "/modules"
)

// openRetry is how long the transport may take to appear (its module loads,
// udev-less device nodes come up) before the agent gives up and powers off.
const openRetry = 10 * time.Second

func main() {
	// the pod's shared PID namespace is held by this binary re-executed as
	// the pod init (runcbe)
	if len(os.Args) >= 2 && os.Args[1] == podinit.Arg {
		if err := podinit.Run(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	// development mode: run as an ordinary process on a host, serving a
	// unix socket (what a QEMU chardev socket looks like to the host), with
	// no mounts, modules or power-off
	dev := flag.Bool("dev", false, "not PID 1: serve -listen, mount nothing, never power off")
	listen := flag.String("listen", "", "dev mode: unix socket to serve")
	share := flag.String("share", agentapi.ShareRoot, "dev mode: the share directory")
	ioRoot := flag.String("io", agentapi.IORoot, "dev mode: the stdio FIFO directory")
	state := flag.String("state", "/run/magnetar", "dev mode: state directory (task/, runc/, ctr/ below it)")
	runcBin := flag.String("runc", "", "runc binary (default /bin/runc, else PATH)")
	level := flag.String("log-level", "", "log level (default: magnetar.log on the kernel command line, else info)")
	flag.Parse()

	pid1 := os.Getpid() == 1
	setupLogging()
	ctx := context.Background()
	lg := log.G(ctx)
	if !pid1 && !*dev {
		fmt.Fprintln(os.Stderr, "magnetar-agent: not PID 1; run it as the VM's /init, or with -dev -listen <socket> for development")
		os.Exit(2)
	}
	// A process sharing our pid namespace must not stop us: catch (not
	// ignore: SIG_IGN would be inherited by runc and every container) the
	// signals that would end a Go program, and log them.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	go func() {
		for s := range sigs {
			if s != unix.SIGPIPE {
				log.L.WithField("signal", s).Warn("signal ignored: the agent only stops on Shutdown")
			}
		}
	}()

	rp := reaper.New()
	runc.Monitor = rp
	go rp.Run(ctx)

	features := []string{}
	var lateModules func() // the kernel modules not needed to serve
	cl := guest.DefaultCmdline()
	paths := struct{ state, runc, ctr, share, io string }{stateDir, runcRoot, ctrDir, agentapi.ShareRoot, agentapi.IORoot}
	if pid1 {
		start := time.Now()
		phase := map[string]time.Duration{}
		mark := func(name string, since time.Time) time.Time {
			phase[name] = time.Since(since).Round(time.Millisecond)
			return time.Now()
		}
		t := start
		for _, err := range guest.MountBasics() {
			lg.WithError(err).Warn("mount")
		}
		setupLogging() // /dev/console exists now
		if err := guest.LoopbackUp(); err != nil {
			lg.WithError(err).Warn("lo up")
		}
		t = mark("mounts", t)
		b, _ := os.ReadFile("/proc/cmdline")
		var err error
		if cl, err = guest.ParseCmdline(string(b)); err != nil {
			lg.WithError(err).Error("bad kernel command line: using defaults for the bad keys")
		}
		for _, k := range cl.Unknown {
			lg.WithField("key", k).Warn("unknown magnetar.* key on the kernel command line")
		}
		setLevel(cl.LogLevel)
		// what serving needs now; the rest once serving (background)
		boot := guest.BootModules(cl, hasPCI())
		loaded, mtimes, errs := guest.LoadModulesOf(modDir, boot)
		lateModules = func() {
			t0 := time.Now()
			more, _, errs := guest.LoadModulesOf(modDir, func(n string) bool { return !boot(n) })
			for _, err := range errs {
				log.L.WithError(err).Warn("kernel module")
			}
			log.L.WithFields(log.Fields{"modules": len(more), "elapsed": time.Since(t0).Round(time.Millisecond)}).Info("remaining kernel modules loaded")
		}
		t = mark("modules", t)
		sort.Slice(mtimes, func(i, j int) bool { return mtimes[i].Took > mtimes[j].Took })
		var slowest []string
		for _, m := range mtimes[:min(3, len(mtimes))] {
			slowest = append(slowest, fmt.Sprintf("%s=%s", strings.TrimSuffix(m.Name, ".ko"), m.Took.Round(time.Millisecond)))
		}
		for _, err := range errs {
			lg.WithError(err).Warn("kernel module")
		}
		t = time.Now()
		if err := guest.MountShare(cl.Share, agentapi.ShareRoot, 5*time.Second); err != nil {
			lg.WithError(err).Error("host share not mounted: containers cannot be created")
		} else if cl.Share.Kind != "none" {
			features = append(features, "share:"+cl.Share.Kind)
		}
		mark("share", t)
		if mode, _ := cgroupMode(); mode != "" {
			features = append(features, mode)
		}
		lg.WithFields(log.Fields{"modules": len(loaded), "transport": cl.Transport.String(), "share": cl.Share.String(),
			"elapsed": time.Since(start).Round(time.Millisecond), "t_mounts": phase["mounts"], "t_modules": phase["modules"],
			"t_share": phase["share"], "slowest_modules": strings.Join(slowest, ",")}).Info("guest initialised")
	} else {
		paths.state, paths.runc, paths.ctr = filepath.Join(*state, "task"), filepath.Join(*state, "runc"), filepath.Join(*state, "ctr")
		paths.share, paths.io = filepath.Clean(*share), filepath.Clean(*ioRoot)
		// orphans (a container's init once runc exits) come to us, as to PID 1
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			lg.WithError(err).Warn("PR_SET_CHILD_SUBREAPER")
		}
	}
	if *level != "" {
		setLevel(*level)
	}

	rb := findRunc(*runcBin)
	be, err := runcbe.New(runcbe.Config{Runc: rb, Root: paths.runc, Dir: paths.ctr, ShareRoot: paths.share, Reaper: rp,
		NoPivot: pid1 && rootIsInitramfs()})
	if err != nil {
		fatal(pid1, "container backend", err)
	}
	sys := &guest.System{}
	a, err := service.New(ctx, service.Config{Backend: be, StateDir: paths.state, IORoot: paths.io, System: sys,
		Monitor: rp, Features: features, BootTime: bootTime()})
	if err != nil {
		fatal(pid1, "agent services", err)
	}
	lg.WithFields(log.Fields{"protocol": agentapi.Version, "agent_version": service.AgentVersion, "runc": rb, "no_pivot": pid1 && rootIsInitramfs()}).Info("magnetar-agent serving")
	if lateModules != nil {
		go lateModules()
	}

	switch {
	case !pid1:
		if *listen == "" {
			fatal(false, "dev mode", fmt.Errorf("-listen is required"))
		}
		l, err := transport.Listen(*listen)
		if err != nil {
			fatal(false, "listen", err)
		}
		err = a.Serve(ctx, l)
		fatal(false, "serve", err)
	case cl.Transport.Kind == "vsock":
		serveVsock(ctx, a, cl.Transport.VsockPort)
	default:
		name := cl.Transport.SerialName
		serveSerial(ctx, a, "serial:"+name, func() (string, error) { return guest.FindSerialPort("/sys", "/dev", name) })
	}
	fatal(pid1, "serve", fmt.Errorf("serving ended"))
}

// serveVsock listens on the vsock port (retrying while the transport
// module comes up) and serves every host connection.
func serveVsock(ctx context.Context, a *service.Agent, port uint32) {
	lg := log.G(ctx).WithField("transport", fmt.Sprintf("vsock:%d", port))
	deadline := time.Now().Add(openRetry)
	for {
		l, err := transport.ListenVsock(port)
		if err != nil {
			if time.Now().After(deadline) {
				lg.WithError(err).Error("cannot listen on vsock: giving up")
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		lg.Info("listening")
		err = a.Serve(ctx, l)
		lg.WithError(err).Warn("vsock listener ended: listening again")
		deadline = time.Now().Add(openRetry)
	}
}

// serveSerial serves the virtio-serial port find returns, a ttrpc session
// for each host connection, until the port cannot be found or opened within
// openRetry.
//
// The port's character device stays open from one host to the next: when
// the host side goes away the guest reads EOF (until a host is back), and
// a new session starts on the same descriptor. Closing the device instead
// would drop what it holds unread (virtio_console discards a port's input
// on release), and with it the first request of a host that reconnects
// before the guest noticed the hang-up: that host would wait for an answer
// forever. A path that is a unix socket (tests, like QEMU's chardev) is
// dialled again for every session.
func serveSerial(ctx context.Context, a *service.Agent, what string, find func() (string, error)) {
	lg := log.G(ctx).WithField("transport", what)
	deadline := time.Now().Add(openRetry)
	var dev string
	for {
		p, err := find()
		if err == nil {
			dev = p
			break
		}
		if time.Now().After(deadline) {
			lg.WithError(err).Error("virtio-serial port not found: giving up (virtio_console loaded? -device virtserialport,name=...?)")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	lg = lg.WithField("device", dev)
	fi, err := os.Stat(dev)
	persistent := err == nil && fi.Mode()&os.ModeCharDevice != 0
	failures := 0
	for {
		conn, err := transport.OpenSerial(dev)
		if err != nil {
			failures++
			if failures > int(openRetry/(100*time.Millisecond)) {
				lg.WithError(err).Error("cannot open the virtio-serial port: giving up")
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		failures = 0
		serveSessions(ctx, a, lg, conn, persistent)
	}
}

// serveSessions serves conn, a session after another while persistent (a
// device whose reads end at each host hang-up), else once; it closes conn
// when it returns.
func serveSessions(ctx context.Context, a *service.Agent, lg *log.Entry, conn net.Conn, persistent bool) {
	defer conn.Close()
	backoff := 10 * time.Millisecond
	for {
		s := &session{Conn: conn, closed: make(chan struct{})}
		l := transport.SerialListener(s)
		start := time.Now()
		go func() { _ = a.Serve(ctx, l) }()
		<-s.closed
		l.Close()
		if d := time.Since(start); d > time.Second {
			lg.WithField("served", d.Round(time.Millisecond)).Info("host disconnected: serving the port again")
			backoff = 10 * time.Millisecond
		} else {
			// no host on the other side yet: reads end at once
			time.Sleep(backoff)
			backoff = min(2*backoff, 100*time.Millisecond)
		}
		if !persistent || ctx.Err() != nil {
			return
		}
	}
}

// session is one ttrpc session on a port: the server's Close ends the
// session (and tells serveSessions) without closing the port, and the
// session neither reads nor writes after it, so that a late answer of an
// ended session never mixes into the next host's stream.
type session struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (s *session) Read(b []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	return s.Conn.Read(b)
}

func (s *session) Write(b []byte) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	return s.Conn.Write(b)
}

func (s *session) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func findRunc(flagged string) string {
	if flagged != "" {
		return flagged
	}
	for _, p := range []string{"/bin/runc", "/usr/bin/runc", "/usr/local/bin/runc", "/usr/sbin/runc"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	log.L.Warn("no runc found (/bin/runc expected): containers cannot be created")
	return "/bin/runc"
}

func cgroupMode() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "", err
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "cgroup2", nil
	}
	return "cgroup1", nil
}

// rootIsInitramfs reports whether / is the initramfs (ramfs or tmpfs),
// which pivot_root(2) refuses.
func rootIsInitramfs() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return true
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}

// hasPCI reports whether the machine has a PCI bus with devices (microvm
// has none: its virtio devices are on MMIO).
func hasPCI() bool {
	ents, err := os.ReadDir("/sys/bus/pci/devices")
	return err == nil && len(ents) > 0
}

// bootTime is btime from /proc/stat.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Now()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Now()
}

// setupLogging sends logs to /dev/console (stderr before it exists).
func setupLogging() {
	out := os.Stderr
	if os.Getpid() == 1 {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			out = f
		}
	}
	logrus.SetOutput(out)
	logrus.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	log.L = logrus.NewEntry(logrus.StandardLogger()).WithField("agent", "magnetar-agent")
}

func setLevel(l string) {
	if lv, err := logrus.ParseLevel(l); err == nil {
		logrus.SetLevel(lv)
	}
}

// fatal logs and, as PID 1, powers off (never returns); otherwise exits.
func fatal(pid1 bool, what string, err error) {
	log.L.WithError(err).Errorf("%s: cannot serve", what)
	if pid1 {
		guest.PowerOff()
	}
	os.Exit(1)
}
