package stratovirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// Name is the hypervisor's name (vm.Hypervisor.Name, State).
const Name = "stratovirt"

// DefaultBinary is StratoVirt when vm.Config.Binary is empty (looked up in
// PATH).
const DefaultBinary = "stratovirt"

// AccelKVM is StratoVirt's one accelerator.
const AccelKVM = "kvm"

// Options tune the driver (timeouts); the zero value is the defaults.
type Options = vmhost.Options

// Hypervisor is StratoVirt (microvm) as a vm.Hypervisor.
type Hypervisor struct {
	opts Options
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// New returns the StratoVirt driver.
func New(o Options) *Hypervisor { return &Hypervisor{opts: o.WithDefaults()} }

// Name is "stratovirt".
func (h *Hypervisor) Name() string { return Name }

// Accel resolves vm.accel for StratoVirt, which has no emulation: "auto"
// (or empty) and "kvm" are kvm; "tcg" cannot be honoured and fails
// (errdefs.ErrInvalidArgument), as does anything else. Whether the host's
// KVM can run the guest is StratoVirt's to find out at start.
func Accel(want string) (string, error) {
	switch want {
	case "", "auto", AccelKVM:
		return AccelKVM, nil
	case "tcg":
		return "", fmt.Errorf("stratovirt has no emulation, it runs guests on KVM only: set vm.accel to \"auto\" or \"kvm\", or map no handler to stratovirt in [hypervisors]: %w", errdefs.ErrInvalidArgument)
	}
	return "", fmt.Errorf("accelerator %q: stratovirt runs on kvm only: %w", want, errdefs.ErrInvalidArgument)
}

// Start launches virtiofsd (when cfg.Share is set) and StratoVirt for cfg
// (see the package doc) and returns once StratoVirt's daemon answers
// query-status on QMP.
//
// Errors: an invalid cfg is errdefs.ErrInvalidArgument (a kernel that is
// no bzImage too: StratoVirt boots no ELF vmlinux on x86_64); a missing
// binary, kernel, initrd or share errdefs.ErrNotFound; StratoVirt refusing
// its command line, or exiting during start, errdefs.ErrFailedPrecondition
// with the tail of its log and of the guest console. On error nothing
// started is left running, the sockets and pid file are removed, and the
// logs stay in cfg.Dir.
func (h *Hypervisor) Start(ctx context.Context, cfg *vm.Config) (vm.VM, error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", cfg.ID))
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if _, err := Accel(cfg.Accel); err != nil {
		return nil, err
	}
	bin, err := vmhost.Binary(Name, cfg, DefaultBinary)
	if err != nil {
		return nil, err
	}
	if err := checkKernel(cfg); err != nil {
		return nil, err
	}
	v := newVM(h, startState(cfg))
	// the QMP socket exists once the daemon has set its channels up, but
	// is served only from its main loop, after the machine was built and
	// the kernel loaded: a device or kernel StratoVirt refuses shows up
	// as the daemon exiting, its reason in its -D log. StratoVirt refuses
	// to start when its pid file exists: Boot removes it first.
	err = v.Boot(ctx, vmhost.Boot{Config: cfg, State: &v.st.State, VirtiofsdLog: VirtiofsdLog,
		Control: "QMP", Ping: v.qmp.Ping,
		Launch: func(ctx context.Context, extra []*os.File, cid uint32) error {
			args, err := Args(cfg, cid)
			if err != nil {
				return err
			}
			return v.launch(ctx, bin, args, extra, cfg.Cgroup)
		}})
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"pid": v.VMM.Pid(), "agent": v.Agent().String()}).Info("stratovirt started")
	return v, nil
}

// launch runs StratoVirt with -daemonize: the process it starts checks the
// command line, forks the daemon and exits (0, or 1 with StratoVirt's
// message when it refused the command line); the daemon writes its pid to
// the pid file and runs the VM. launch waits for the first to exit, then
// for the pid file, and watches the daemon (hostproc.Adopt, into cgroup).
func (v *VM) launch(ctx context.Context, bin string, args []string, extra []*os.File, cgroup string) error {
	p, err := hostproc.Start(ctx, hostproc.Spec{Name: Name, Path: bin, Args: args, Log: v.Path(Log), ExtraFiles: extra, Cgroup: cgroup})
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		_ = p.KillWait(hostproc.DefaultKillWait)
		return fmt.Errorf("stratovirt (pid %d) did not daemonize: %w%s", p.Pid(), err, v.Diagnostics())
	}
	if st := p.ExitStatus(); st != "exit status 0" {
		return fmt.Errorf("stratovirt refused to start (%s)%s: %w", st, v.Diagnostics(), errdefs.ErrFailedPrecondition)
	}
	pid, err := v.waitPidFile(ctx)
	if err != nil {
		return err
	}
	d, err := hostproc.Adopt(Name, pid)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("stratovirt (pid %d) exited during start%s: %w", pid, v.Diagnostics(), errdefs.ErrFailedPrecondition)
		}
		return err
	}
	// the daemon was forked before its parent was in the cgroup
	if err := d.MoveToCgroup(cgroup); err != nil {
		return err
	}
	v.VMM, v.st.VMM = d, d.ID()
	return nil
}

// waitPidFile waits for the daemon's pid in the pid file (StratoVirt
// writes it right after its second fork). A daemon that fails right away
// removes its pid file as it exits, maybe before it was read: while there
// is none, the daemon is looked for by its command line (the first
// process's, naming the QMP socket: the fork in between has it too), and
// its absence fails, with its log. Absent is absent three polls in a row:
// a process's command line reads empty while it executes another program.
func (v *VM) waitPidFile(ctx context.Context) (int, error) {
	missing := 0
	for {
		b, err := os.ReadFile(v.Path(PidFile))
		switch {
		case err == nil:
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		case !errors.Is(err, fs.ErrNotExist):
			return 0, fmt.Errorf("stratovirt pid file: %w", err)
		case len(proc.Find(proc.Naming(v.st.QMPSocket))) > 0:
			missing = 0
		default:
			if missing++; missing >= 3 {
				return 0, fmt.Errorf("stratovirt exited during start, before its daemon wrote %s%s: %w", v.Path(PidFile), v.Diagnostics(), errdefs.ErrFailedPrecondition)
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("stratovirt daemonized but wrote no pid to %s: %w%s", v.Path(PidFile), ctx.Err(), v.Diagnostics())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// checkKernel checks the kernel and initrd (vm.CheckGuest), then that the
// kernel is a bzImage: StratoVirt's x86_64 boot loader refuses an ELF
// vmlinux ("ELF-format kernel is not supported").
func checkKernel(cfg *vm.Config) error {
	if err := vm.CheckGuest(cfg); err != nil {
		return err
	}
	f, err := os.Open(cfg.Kernel)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := f.Read(head); err == nil && bytes.Equal(head, []byte("\x7fELF")) {
		return fmt.Errorf("kernel %s is an ELF vmlinux: StratoVirt boots a bzImage on x86_64: %w", cfg.Kernel, errdefs.ErrInvalidArgument)
	}
	return nil
}
