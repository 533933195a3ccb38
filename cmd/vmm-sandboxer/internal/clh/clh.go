package clh

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Name is the hypervisor's name (vm.Hypervisor.Name, State, vmm.toml's
// [hypervisors] values).
const Name = "cloud-hypervisor"

// DefaultBinary is Cloud Hypervisor when vm.Config.Binary is empty (looked
// up in PATH).
const DefaultBinary = "cloud-hypervisor"

// Accelerators (vm.Config.Accel, Accel).
const (
	// AccelKVM is the only one: Cloud Hypervisor has no emulator.
	AccelKVM = "kvm"
	// AccelAuto is resolved to AccelKVM.
	AccelAuto = "auto"
)

// KVMDevice is what Cloud Hypervisor opens first.
const KVMDevice = "/dev/kvm"

// DefaultRecoverTimeout bounds Recover's exchange with the API.
const DefaultRecoverTimeout = 5 * time.Second

// Options tune the driver; zero values are the defaults (vmhost's, and
// DefaultRecoverTimeout).
type Options struct {
	vmhost.Options
	// RecoverTimeout bounds Recover's exchange with the API.
	RecoverTimeout time.Duration

	// kvmDevice replaces KVMDevice (tests).
	kvmDevice string
}

// Hypervisor is Cloud Hypervisor as a vm.Hypervisor.
type Hypervisor struct {
	opts Options
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// New returns the Cloud Hypervisor driver.
func New(o Options) *Hypervisor {
	o.Options = o.Options.WithDefaults()
	if o.RecoverTimeout <= 0 {
		o.RecoverTimeout = DefaultRecoverTimeout
	}
	if o.kvmDevice == "" {
		o.kvmDevice = KVMDevice
	}
	return &Hypervisor{opts: o}
}

// Name is "cloud-hypervisor".
func (h *Hypervisor) Name() string { return Name }

// Accel resolves vm.accel for Cloud Hypervisor: "auto" and "kvm" are KVM
// (Cloud Hypervisor itself finds out whether the host has it, and a pod
// start says why not); "tcg" cannot be honoured, Cloud Hypervisor has no
// emulator, and is an error naming the key.
func Accel(want string) (string, error) {
	switch want {
	case AccelAuto, AccelKVM, "":
		return AccelKVM, nil
	}
	return "", fmt.Errorf("vm.accel = %q: Cloud Hypervisor runs on KVM only (it has no emulator): set vm.accel = \"auto\" or \"kvm\", or map no runtime handler to %s: %w",
		want, Name, errdefs.ErrInvalidArgument)
}

// AgentChannel resolves vm.agent for Cloud Hypervisor: always hybrid vsock,
// its only host-guest socket (vm.agent chooses between QEMU's vsock and
// virtio-serial).
func AgentChannel(string) (string, error) { return vm.ChannelHybridVsock, nil }

// Start launches virtiofsd (when cfg.Share is set) and Cloud Hypervisor
// with its API socket, defines the VM over the API (vm.create, one
// vm.add-net per NIC with its tap, vm.boot) and returns once vm.info says
// it runs (see the package doc).
//
// Errors: an invalid cfg is errdefs.ErrInvalidArgument; a missing binary,
// kernel, initrd or share errdefs.ErrNotFound; a kernel that is neither a
// bzImage nor an ELF errdefs.ErrInvalidArgument; no usable /dev/kvm,
// Cloud Hypervisor refusing the VM, or it (or virtiofsd) exiting during
// start errdefs.ErrFailedPrecondition with its message and the tails of its
// log and of the console. On error nothing started is left running, the
// sockets are removed, and the logs stay in cfg.Dir.
func (h *Hypervisor) Start(ctx context.Context, cfg *vm.Config) (_ vm.VM, retErr error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", cfg.ID))
	if err := validate(cfg); err != nil {
		return nil, err
	}
	bin, err := vmhost.Binary(Name, cfg, DefaultBinary)
	if err != nil {
		return nil, err
	}
	if err := vm.CheckGuest(cfg); err != nil {
		return nil, err
	}
	if err := checkKVM(h.opts.kvmDevice); err != nil {
		return nil, err
	}
	body, err := VMConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cloud-hypervisor run directory: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.StartTimeout)
		defer cancel()
	}

	v := newVM(h, cfg)
	// what a previous run left would be taken for this one's (and Cloud
	// Hypervisor does not bind over an existing socket)
	if err := v.RemoveFiles(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			v.Abort(ctx)
		}
	}()
	if cfg.Share != "" {
		id, err := v.StartVirtiofsd(ctx, cfg, VirtiofsdLog)
		if err != nil {
			return nil, err
		}
		v.st.Virtiofsd, v.st.ShareMounted = &id, v.ShareMounted
	}
	p, err := hostproc.Start(ctx, hostproc.Spec{Name: Name, Path: bin, Args: Args(cfg), Log: v.Path(CLHLog), Cgroup: cfg.Cgroup})
	if err != nil {
		return nil, err
	}
	v.VMM, v.st.CLH = p, p.ID()
	// the socket is there from the VMM's start; it answers once the API
	// thread runs
	var ping *clhapi.VmmPingResponse
	if err := v.WaitReady(ctx, "its API socket", func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		ping, err = v.api.Ping(actx)
		return err
	}); err != nil {
		return nil, err
	}
	if err := v.api.CreateVM(ctx, body); err != nil {
		return nil, v.startError("vm.create", err)
	}
	for i, n := range cfg.NICs {
		if _, err := v.api.AddNet(ctx, NetConfig(i, n), n.Tap); err != nil {
			return nil, v.startError(fmt.Sprintf("vm.add-net (nic %d, %s)", i, n.TapName), err)
		}
	}
	if err := v.api.BootVM(ctx); err != nil {
		return nil, v.startError("vm.boot", err)
	}
	info, err := v.api.Info(ctx)
	if err != nil {
		return nil, v.startError("vm.info", err)
	}
	if info.State != clhapi.Running {
		return nil, v.startError("vm.info", fmt.Errorf("the VM is %s after vm.boot, not %s: %w", info.State, clhapi.Running, errdefs.ErrUnknown))
	}
	log.G(ctx).WithFields(log.Fields{"pid": p.Pid(), "version": ping.Version, "agent": v.Agent().String()}).Info("cloud-hypervisor started")
	v.WatchHelpers(context.WithoutCancel(ctx))
	return v, nil
}

// startError is the error of a start step that failed: the VMM's exit
// when that is why, else its answer as errdefs.ErrFailedPrecondition (it
// refused the VM) with the tails of the logs.
func (v *VM) startError(step string, err error) error {
	if !v.VMM.Running() {
		return v.ExitedError("during " + step)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("cloud-hypervisor (pid %d) refused %s: %d %s%s: %w", v.VMM.Pid(), step, ae.Status, ae.Message, v.Diagnostics(), errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("cloud-hypervisor (pid %d) %s: %w%s", v.VMM.Pid(), step, err, v.Diagnostics())
}

// checkKVM fails with errdefs.ErrFailedPrecondition when device (KVM) does
// not open: Cloud Hypervisor would exit at once, and a pod start should say
// why before virtiofsd is even started.
func checkKVM(device string) error {
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		hint := ""
		if errors.Is(err, fs.ErrNotExist) {
			hint = " (load kvm_intel or kvm_amd; inside a VM, enable nested virtualisation)"
		}
		return fmt.Errorf("cloud-hypervisor needs KVM: %w%s: %w", err, hint, errdefs.ErrFailedPrecondition)
	}
	return f.Close()
}
