package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/ctrdstore"
	"github.com/magnetar-runtime/magnetar/shared/debugsrv"
	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/fdstore"
	"github.com/magnetar-runtime/magnetar/shared/killpoint"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/rpcserver"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/transport"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Version is set at build time with -ldflags "-X ...daemon.Version=...".
var Version = "dev"

// Config is a sandboxer's whole configuration: the common keys plus its own.
type Config interface {
	config.Validator
	Common() *config.Daemon
}

// Env is what a sandboxer gets to build its parts.
type Env struct {
	// Life ends when the daemon stops.
	Life context.Context
	Name string
	// Dir is the state directory (config "dir").
	Dir string
	// TaskSocket is the Task API socket path; TaskAddress its address for
	// Controller.Start.
	TaskSocket  string
	TaskAddress string
	Events      events.Publisher
	// FDs holds descriptors in the keeper across daemon restarts
	// (shared/fdstore): containerd's stdio FIFOs a backend relays. Its
	// calls fail with errdefs.ErrUnavailable while the running keeper,
	// started by an older daemon, serves no store.
	FDs *fdstore.Client
}

// Closer is implemented by drivers that hold something of the daemon's own,
// not of a pod, to give back when the daemon stops (the vmm sandboxer's
// warm pool of VMs). Pods are not its business: they outlive the daemon.
type Closer interface {
	Close(ctx context.Context) error
}

// closeTimeout bounds a driver's Close when the daemon stops.
const closeTimeout = 30 * time.Second

// StopTimeouter is implemented by configurations that set the grace period
// given to a pod's containers still running when Controller.Stop asks for
// none (see controller.WithStopTimeout).
type StopTimeouter interface {
	StopTimeout() time.Duration
}

// Sandboxer describes one sandbox technology to Main.
type Sandboxer struct {
	// Name is the short name: "runc", "wasm", "vmm", "quark".
	Name string
	// NewConfig returns the configuration with its defaults.
	NewConfig func() Config
	// Build makes the driver and the task backend (nil when the sandboxer
	// serves no Task API itself).
	Build func(env *Env, cfg Config) (sandbox.Driver, task.Backend, error)
	// ShimDelete cleans up after a lost task, for containerd's
	// `<binary> -id ID -bundle DIR ... delete`. Optional.
	ShimDelete func(ctx context.Context, id, bundle string) (*ShimExit, error)
	// Features is what the sandboxer's pods support, with cfg (the
	// handler's configuration, loaded but not host-checked), for
	// containerd's `<binary> -info` (see printInfo): it must be the truth,
	// since the kubelet then admits pods with user namespaces or recursive
	// read-only mounts on the handler. Optional: nothing is declared.
	Features func(ctx context.Context, cfg Config) (*features.Features, error)
}

// ShimExit is what a shim-style delete reports.
type ShimExit struct {
	Pid    uint32
	Status uint32
	At     time.Time
}

// gcPercent is the garbage collector's target for a resident daemon whose
// heap is a few MiB: half of Go's default 100 keeps management memory
// lower (measured: about 7% less PSS at 50 pods) for GC work that is
// negligible at this heap size. The GOGC variable still overrides it.
const gcPercent = 50

// Main runs a sandboxer and exits the process.
func Main(sb Sandboxer) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if err := run(sb, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s-sandboxer: %v\n", sb.Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run(sb Sandboxer, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "-info" {
		return printInfo(sb, stdin, stdout)
	}
	if len(args) > 0 && args[0] == KeeperArg {
		return runKeeper(args[1:])
	}
	if len(args) >= 1 && len(args) <= 2 && args[0] == PodInitArg {
		return RunPodInit()
	}
	if isShimInvocation(args) {
		return shimDelete(sb, args, stdout, stderr)
	}
	cfg := sb.NewConfig()
	common := cfg.Common()
	fs := flag.NewFlagSet(sb.Name+"-sandboxer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", filepath.Join(config.DefaultConfDir, sb.Name+".toml"), "TOML configuration file")
	listen := fs.String("listen", "", "Sandbox API socket (default from config: "+common.Listen+")")
	dir := fs.String("dir", "", "state directory (default from config: "+common.Dir+")")
	cdAddr := fs.String("containerd-address", "", "containerd's ttrpc socket, for events (default from config: "+common.ContainerdAddress+")")
	level := fs.String("log-level", "", "log level: trace, debug, info, warn, error (default from config: "+common.LogLevel+")")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version {
		fmt.Fprintf(stdout, "%s-sandboxer %s %s\n", sb.Name, Version, runtime.Version())
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	warnings, err := config.Load(*configPath, explicit, cfg)
	if err != nil {
		return err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{{*listen, &common.Listen}, {*dir, &common.Dir}, {*cdAddr, &common.ContainerdAddress}, {*level, &common.LogLevel}} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// logging is set up as soon as its level is known, so that the
	// configuration's warnings (deprecated keys) reach the log even when the
	// host check below stops the daemon
	_ = log.SetLevel(common.LogLevel)
	_ = log.SetFormat(log.TextFormat)
	for _, w := range warnings {
		log.L.WithFields(log.Fields{"sandboxer": sb.Name, "config": *configPath, "key": w.Key}).Warn(w.Msg)
	}
	// fail at start, naming the key, rather than fail every pod later
	if hc, ok := cfg.(config.HostChecker); ok {
		if err := hc.CheckHost(); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	return serve(sb, cfg)
}

func serve(sb Sandboxer, cfg Config) error {
	common := cfg.Common()
	_ = log.SetLevel(common.LogLevel)
	_ = log.SetFormat(log.TextFormat)
	life, stop := context.WithCancel(context.Background())
	defer stop()
	life = log.WithLogger(life, log.G(life).WithField("sandboxer", sb.Name))
	// crash testing only (hack/chaos): unset, this arms nothing
	if kp, err := killpoint.Setup(); err != nil {
		return err
	} else if kp != "" {
		log.G(life).WithField("killpoint", kp).Warn("kill point armed: this daemon kills itself there (" + killpoint.EnvVar + ")")
	}

	// Container inits are re-parented to us when runc (our child) exits, so
	// that we can collect their exit status.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	if err := os.MkdirAll(common.Dir, 0o700); err != nil {
		return err
	}
	taskSock := common.TaskSocketPath(sb.Name)
	q := events.NewTTRPCQueue(life, common.ContainerdAddress, events.Options{})
	// containerd dials the keeper, which outlives us; we serve behind it
	ks := newKeeperSockets(sb.Name, taskSock, common.Listen)
	fds := fdstore.NewClient(ks.FDs)
	env := &Env{Life: life, Name: sb.Name, Dir: common.Dir, TaskSocket: taskSock,
		TaskAddress: "ttrpc+unix://" + taskSock, Events: q, FDs: fds}
	driver, backend, err := sb.Build(env, cfg)
	if err != nil {
		return err
	}

	if err := ensureKeeper(life, ks); err != nil {
		return err
	}
	copts := []controller.Option{controller.WithUnstartedGrace(time.Duration(common.UnstartedGrace))}
	if every := time.Duration(common.ForgottenCheck); every > 0 {
		reg, err := ctrdstore.New(common.ContainerdGRPC())
		if err != nil {
			return err
		}
		defer reg.Close()
		copts = append(copts, controller.WithForgotten(reg, every))
	}
	if st, ok := cfg.(StopTimeouter); ok {
		copts = append(copts, controller.WithStopTimeout(st.StopTimeout()))
	}
	parts, err := NewParts(life, common.Dir, sb.Name, driver, backend, q, copts...)
	if err != nil {
		return err
	}
	if err := parts.Recover(life); err != nil {
		return err
	}
	// as a child subreaper we inherit every orphan below us: reap those no
	// watch will (after the recovery, which watches the ones it knows)
	go proc.ReapStrays(life, strayReapInterval, func(pid, status int) {
		log.G(life).WithFields(log.Fields{"pid": pid, "status": status}).Debug("reaped a stray child")
	})
	// the recovery held again what it relays: the rest is of processes that
	// went away while no daemon ran
	if err := fds.RetainHeld(); err != nil && !errdefs.IsUnavailable(err) {
		log.G(life).WithError(err).Warn("closing the descriptors the keeper no longer needs to hold")
	}
	var tsrv *ttrpc.Server
	if svc := parts.Tasks; svc != nil {
		if tsrv, err = rpcserver.NewTTRPC(); err != nil {
			return err
		}
		svc.Register(tsrv)
		l, err := transport.Listen(ks.TaskBackend)
		if err != nil {
			return fmt.Errorf("task backend socket: %w", err)
		}
		go func() {
			if err := serveTasks(life, tsrv, l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
				log.G(life).WithError(err).Error("task server stopped")
				stop()
			}
		}()
	}

	if common.DebugSocket != "" {
		if err := debugsrv.Serve(life, common.DebugSocket); err != nil {
			return err
		}
	}

	gsrv := rpcserver.NewGRPC()
	parts.Controller.Register(gsrv)
	l, err := transport.Listen(ks.APIBackend)
	if err != nil {
		return fmt.Errorf("sandbox API backend socket: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gsrv.Serve(l) }()
	log.G(life).WithFields(log.Fields{"listen": common.Listen, "task_socket": taskSock, "dir": common.Dir, "version": Version}).Info("serving")
	notify("READY=1")
	go superviseKeeper(life, ks, keeperCheckInterval)
	go watchdog(life, func(ctx context.Context, timeout time.Duration) error {
		if _, ok := runningKeeper(ks); !ok {
			return fmt.Errorf("the task keeper is not running")
		}
		return probe(ctx, ks.API, timeout)
	})

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				dumpStacks(life)
				continue
			}
			log.G(life).WithField("signal", s).Info("stopping; pods keep running")
		case err := <-serveErr:
			log.G(life).WithError(err).Error("sandbox API server stopped")
		case <-life.Done():
		}
		notify("STOPPING=1")
		gsrv.Stop()
		if tsrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = tsrv.Shutdown(sctx)
			cancel()
		}
		stop()
		if c, ok := driver.(Closer); ok {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(life), closeTimeout)
			if err := c.Close(cctx); err != nil {
				log.G(life).WithError(err).Warn("releasing the driver's own resources")
			}
			cancel()
		}
		return nil
	}
}

// serveTasks serves the Task API on l. Requests get the lifetime's values
// (the logger) but not its cancellation: a daemon that stops must not answer
// the requests still in flight (a Wait blocks until its process exits). An
// answer such as "context canceled" would reach containerd through the
// keeper as the task's end, and containerd would then delete a container
// that is still running; unanswered, the keeper replays them to the next
// daemon.
func serveTasks(life context.Context, srv *ttrpc.Server, l net.Listener) error {
	return srv.Serve(context.WithoutCancel(life), l)
}

func dumpStacks(ctx context.Context) {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	log.G(ctx).Infof("goroutine dump:\n%s", buf[:n])
}

// isShimInvocation recognises containerd's `... -id X ... delete`.
func isShimInvocation(args []string) bool {
	if len(args) == 0 || args[len(args)-1] != "delete" {
		return false
	}
	for _, a := range args {
		if a == "-id" || a == "--id" || strings.HasPrefix(a, "-id=") {
			return true
		}
	}
	return false
}
