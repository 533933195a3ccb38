package qemu

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Name is the hypervisor's name (vm.Hypervisor.Name, State).
const Name = "qemu"

// DefaultBinary is QEMU when vm.Config.Binary is empty (looked up in PATH).
const DefaultBinary = "qemu-system-x86_64"

// Defaults of Options.
const (
	// DefaultStartTimeout bounds Start when its context has no deadline.
	DefaultStartTimeout = 30 * time.Second
	// DefaultStopTimeout bounds a graceful Stop when its context has no
	// deadline (Kuasar waits 10 s after quit, too).
	DefaultStopTimeout = 10 * time.Second
	// DefaultHelperGrace is how long Stop lets virtiofsd end by itself
	// once QEMU has exited (it does when its vhost-user peer goes).
	DefaultHelperGrace = vmhost.DefaultHelperGrace
)

// Options tune the driver; the zero value is the defaults.
type Options struct {
	// StartTimeout bounds Start when its context has no deadline.
	StartTimeout time.Duration
	// StopTimeout bounds a graceful Stop when its context has no deadline.
	StopTimeout time.Duration
	// HelperGrace is how long virtiofsd may take to exit after QEMU.
	HelperGrace time.Duration

	// vsockDevice replaces VhostVsockDevice (tests).
	vsockDevice string
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Hypervisor is QEMU (microvm) as a vm.Hypervisor.
type Hypervisor struct {
	opts Options
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// New returns the QEMU driver.
func New(o Options) *Hypervisor {
	o.StartTimeout = orDefault(o.StartTimeout, DefaultStartTimeout)
	o.StopTimeout = orDefault(o.StopTimeout, DefaultStopTimeout)
	o.HelperGrace = orDefault(o.HelperGrace, DefaultHelperGrace)
	if o.vsockDevice == "" {
		o.vsockDevice = VhostVsockDevice
	}
	return &Hypervisor{opts: o}
}

// Name is "qemu".
func (h *Hypervisor) Name() string { return Name }

// Start launches virtiofsd (when cfg.Share is set) and QEMU for cfg (see
// the package doc) and returns once QEMU's QMP monitor greeted and answered
// query-status. cfg.Accel "auto" or empty is resolved with Probe.
//
// Errors: an invalid cfg is errdefs.ErrInvalidArgument; a missing QEMU
// binary, kernel, initrd or share errdefs.ErrNotFound; a kernel that is
// neither a bzImage nor an ELF errdefs.ErrInvalidArgument; QEMU (or
// virtiofsd) exiting during start errdefs.ErrFailedPrecondition with the
// tail of its log and of the guest console. On error nothing started is
// left running, the sockets are removed, and the logs stay in cfg.Dir.
func (h *Hypervisor) Start(ctx context.Context, cfg *vm.Config) (_ vm.VM, retErr error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", cfg.ID))
	if err := validate(cfg); err != nil {
		return nil, err
	}
	accel, err := Probe(cfg.Accel)
	if err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	// before anything starts
	if bin, err = hostproc.LookPath("qemu", bin); err != nil {
		return nil, err
	}
	if err := vm.CheckGuest(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu run directory: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.StartTimeout)
		defer cancel()
	}
	tsc := 0
	if accel == AccelTCG {
		if tsc, err = TSCkHz(); err != nil {
			log.G(ctx).WithError(err).Warn("no host TSC frequency: the guest boots without tsc_early_khz and may hang calibrating its TSC")
		}
	}

	v := newVM(h, cfg, accel)
	// what a previous run left would be taken for this one's
	if err := v.RemoveFiles(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			v.Abort(ctx)
		}
	}()
	if cfg.Share != "" {
		if err := v.StartVirtiofsd(ctx, cfg); err != nil {
			return nil, err
		}
		id := v.FSD.ID()
		v.st.Virtiofsd, v.st.ShareMounted = &id, v.ShareMounted
	}
	extra := make([]*os.File, 0, len(cfg.NICs)+1)
	for _, n := range cfg.NICs {
		extra = append(extra, n.Tap)
	}
	if cfg.Agent.Kind == vm.ChannelVsock {
		f, cid, err := allocCID(h.opts.vsockDevice)
		if err != nil {
			return nil, err
		}
		// QEMU holds the CID through its copy from now on
		defer f.Close()
		extra = append(extra, f)
		v.st.Agent.CID = cid
	}
	args, err := Args(cfg, accel, tsc, v.st.Agent.CID)
	if err != nil {
		return nil, err
	}
	p, err := hostproc.Start(ctx, hostproc.Spec{Name: "qemu", Path: bin, Args: args, Log: v.Path(QEMULog), ExtraFiles: extra, Cgroup: cfg.Cgroup})
	if err != nil {
		return nil, err
	}
	v.VMM, v.st.QEMU = p, p.ID()
	// QMP's socket exists (and accepts) before the machine is built, but
	// QEMU greets only from its main loop, once the kernel and initrd are
	// loaded
	if err := v.WaitReady(ctx, "QMP", func(ctx context.Context) error {
		q, err := DialQMP(ctx, v.st.QMPSocket)
		if err != nil {
			return err
		}
		defer q.Close()
		st, err := q.QueryStatus(ctx)
		if err == nil {
			log.G(ctx).WithField("status", st.Status).Debug("qemu answers on qmp")
		}
		return err
	}); err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"pid": p.Pid(), "accel": accel, "agent": v.Agent().String()}).Info("qemu started")
	v.WatchHelpers(context.WithoutCancel(ctx))
	return v, nil
}
