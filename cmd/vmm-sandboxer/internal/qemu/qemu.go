package qemu

import (
	"context"
	"os"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Name is the hypervisor's name (vm.Hypervisor.Name, State).
const Name = "qemu"

// DefaultBinary is QEMU when vm.Config.Binary is empty (looked up in PATH).
const DefaultBinary = "qemu-system-x86_64"

// Options tune the driver (timeouts); the zero value is the defaults.
type Options = vmhost.Options

// Hypervisor is QEMU (microvm) as a vm.Hypervisor.
type Hypervisor struct {
	opts Options
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// New returns the QEMU driver.
func New(o Options) *Hypervisor { return &Hypervisor{opts: o.WithDefaults()} }

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
func (h *Hypervisor) Start(ctx context.Context, cfg *vm.Config) (vm.VM, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", cfg.ID))
	if err := validate(cfg); err != nil {
		return nil, err
	}
	accel, err := Probe(cfg.Accel)
	if err != nil {
		return nil, err
	}
	bin, err := vmhost.Binary(Name, cfg, DefaultBinary)
	if err != nil {
		return nil, err
	}
	if err := vm.CheckGuest(cfg); err != nil {
		return nil, err
	}
	tsc := 0
	if accel == AccelTCG {
		if tsc, err = TSCkHz(); err != nil {
			log.G(ctx).WithError(err).Warn("no host TSC frequency: the guest boots without tsc_early_khz and may hang calibrating its TSC")
		}
	}

	v := newVM(h, startState(cfg, accel))
	// QEMU's QMP socket exists (and accepts) before the machine is built,
	// but QEMU greets only from its main loop, once the kernel and initrd
	// are loaded: a kernel QEMU refuses shows up as QEMU exiting
	err = v.Boot(ctx, vmhost.Boot{Config: cfg, State: &v.st.State, VirtiofsdLog: VirtiofsdLog,
		Control: "QMP", Ping: v.qmp.Ping,
		Launch: func(ctx context.Context, extra []*os.File, cid uint32) error {
			args, err := Args(cfg, accel, tsc, cid)
			if err != nil {
				return err
			}
			p, err := hostproc.Start(ctx, hostproc.Spec{Name: "qemu", Path: bin, Args: args, Log: v.Path(QEMULog), ExtraFiles: extra, Cgroup: cfg.Cgroup})
			if err != nil {
				return err
			}
			v.VMM, v.st.QEMU = p, p.ID()
			return nil
		}})
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"pid": v.VMM.Pid(), "accel": accel, "agent": v.Agent().String()}).Info("qemu started")
	return v, nil
}
