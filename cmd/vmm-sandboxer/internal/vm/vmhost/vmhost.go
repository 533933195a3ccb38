package vmhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vhostvsock"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Log is a log file of the run directory, quoted by errors.
type Log struct {
	// What names it in errors ("qemu", "virtiofsd", "console").
	What string
	// File is its name in the run directory.
	File string
}

// Machine is the host side of one VM. The driver fills the descriptive
// fields, then sets VMM (and Fsd, through StartVirtiofsd or
// RecoverVirtiofsd); the methods are safe for concurrent use once VMM is
// set.
type Machine struct {
	// Name is the VMM's name in messages and logs ("qemu").
	Name string
	// ID and Dir are the sandbox id and the VM's run directory.
	ID, Dir string
	// Logs are the logs errors quote, in order (the VMM's own, virtiofsd's,
	// the console).
	Logs []Log
	// Console is the guest console's log (a name in Dir).
	Console string
	// RunFiles are the sockets and pid files (names in Dir) that
	// RemoveFiles removes; VirtiofsSocket is removed with virtiofsd's lock.
	RunFiles []string
	// VirtiofsSocket is virtiofsd's socket (a name in Dir; empty without a
	// share).
	VirtiofsSocket string
	// Share is the exported directory; ShareMounted says it was
	// bind-mounted onto itself for virtiofsd (Cleanup undoes it).
	Share        string
	ShareMounted bool
	// Options are the driver's timeouts (defaults applied).
	Options Options
	// Quit asks the VMM to exit through its control channel (a graceful
	// Stop); an error is logged, the VMM killed once Stop's context ends.
	Quit func(ctx context.Context) error

	// VMM is the VMM process, Fsd the share's virtiofsd (nil without one).
	VMM *hostproc.Process
	Fsd *virtiofsd.Daemon

	// stopMu serializes Stop, Cleanup and the helper watch's kill.
	stopMu sync.Mutex
}

// Path is name in the run directory.
func (m *Machine) Path(name string) string { return filepath.Join(m.Dir, name) }

// Boot is what a driver gives Machine.Boot.
type Boot struct {
	// Config is the VM (checked by the driver).
	Config *vm.Config
	// State is the driver's State (its vmhost part): Boot records
	// virtiofsd and the guest CID in it.
	State *State
	// VirtiofsdLog is virtiofsd's log (a name in Dir).
	VirtiofsdLog string
	// Launch starts the VMM and sets the Machine's VMM; extra are the
	// descriptors it inherits (the taps, then the vhost-vsock device
	// holding the guest CID cid).
	Launch func(ctx context.Context, extra []*os.File, cid uint32) error
	// Control names the VMM's control channel ("QMP"); Ping is one attempt
	// at it (WaitReady).
	Control string
	Ping    func(ctx context.Context) error
}

// Boot is the start sequence every driver shares, once it has checked its
// configuration and found its binary: the run directory, a deadline
// (Options.StartTimeout without one), what a previous run left removed,
// virtiofsd for the share, the taps and a vhost-vsock guest CID for the
// VMM to inherit, the driver's Launch, then WaitReady on its control
// channel and the helper watch. On error everything started is killed and
// removed (Abort); the logs stay.
func (m *Machine) Boot(ctx context.Context, b Boot) (retErr error) {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return fmt.Errorf("%s run directory: %w", m.Name, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.Options.StartTimeout)
		defer cancel()
	}
	// what a previous run left would be taken for this one's
	if err := m.RemoveFiles(); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			m.Abort(ctx)
		}
	}()
	cfg := b.Config
	if cfg.Share != "" {
		id, err := m.StartVirtiofsd(ctx, cfg, b.VirtiofsdLog)
		if err != nil {
			return err
		}
		b.State.Virtiofsd, b.State.ShareMounted = &id, m.ShareMounted
	}
	extra := make([]*os.File, 0, len(cfg.NICs)+1)
	for _, n := range cfg.NICs {
		extra = append(extra, n.Tap)
	}
	if cfg.Agent.Kind == vm.ChannelVsock {
		f, cid, err := vhostvsock.AllocCID(m.Options.VsockDevice)
		if err != nil {
			return err
		}
		// the VMM holds the CID through its copy once it runs
		defer f.Close()
		extra = append(extra, f)
		b.State.Agent.CID = cid
	}
	if err := b.Launch(ctx, extra, b.State.Agent.CID); err != nil {
		return err
	}
	if err := m.WaitReady(ctx, b.Control, b.Ping); err != nil {
		return err
	}
	m.WatchHelpers(context.WithoutCancel(ctx))
	return nil
}

// StartVirtiofsd starts the virtiofsd of cfg's share (cfg.Helpers'
// binary, its log at logName in Dir, in cfg's cgroup) and records it and
// the share. It returns virtiofsd's ID, for the driver's State.
func (m *Machine) StartVirtiofsd(ctx context.Context, cfg *vm.Config, logName string) (hostproc.ID, error) {
	fsd, err := virtiofsd.Start(ctx, virtiofsd.Config{
		ID: cfg.ID, Binary: cfg.Helpers[vm.HelperVirtiofsd], Socket: m.Path(m.VirtiofsSocket), Source: cfg.Share,
		Log: m.Path(logName), Cgroup: cfg.Cgroup,
	})
	if err != nil {
		return hostproc.ID{}, err
	}
	m.Fsd, m.Share, m.ShareMounted = fsd, cfg.Share, fsd.ShareMounted()
	return fsd.ID(), nil
}

// RecoverVirtiofsd watches the virtiofsd of id again (package virtiofsd's
// Recover), its log at logName; one that outlived its VMM is killed.
func (m *Machine) RecoverVirtiofsd(ctx context.Context, id hostproc.ID, logName string) error {
	m.Fsd = virtiofsd.Recover(virtiofsd.Config{ID: m.ID, Socket: m.Path(m.VirtiofsSocket), Source: m.Share, Log: m.Path(logName)},
		id, m.ShareMounted)
	if !m.VMM.Running() && m.Fsd.Running() {
		log.G(ctx).WithField("pid", m.Fsd.Pid()).Infof("virtiofsd outlived its %s: killing it", m.Name)
		if err := m.Fsd.KillWait(hostproc.DefaultKillWait); err != nil {
			return fmt.Errorf("recover vm %s: %w", m.ID, err)
		}
	}
	return nil
}

// Recover sets the VMM of a recovered VM (hostproc.Recover of vmm) and its
// virtiofsd (fsd, nil without one: RecoverVirtiofsd, logName its log),
// then watches the helpers.
func (m *Machine) Recover(ctx context.Context, vmm hostproc.ID, fsd *hostproc.ID, logName string) error {
	m.VMM = hostproc.Recover(m.Name, vmm)
	if fsd != nil {
		if err := m.RecoverVirtiofsd(ctx, *fsd, logName); err != nil {
			return err
		}
	}
	log.G(ctx).WithFields(log.Fields{"pid": vmm.Pid, "running": m.VMM.Running()}).Infof("%s vm recovered", m.Name)
	m.WatchHelpers(context.WithoutCancel(ctx))
	return nil
}

// WaitReady calls ping (one attempt at the VMM's control channel, e.g. a
// QMP query-status) every 10 ms until it succeeds; it fails when the VMM
// exits first (with its logs) or ctx ends (with the last attempt's error).
// what names the channel in errors ("QMP").
func (m *Machine) WaitReady(ctx context.Context, what string, ping func(ctx context.Context) error) error {
	var last error
	for {
		err := ping(ctx)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-m.VMM.Done():
			return m.ExitedError("during start")
		case <-ctx.Done():
			// the VMM may have died in the last moment: say so rather than time out
			select {
			case <-m.VMM.Done():
				return m.ExitedError("during start")
			case <-time.After(100 * time.Millisecond):
			}
			return fmt.Errorf("%s (pid %d) did not answer on %s: %w (last: %v)%s", m.Name, m.VMM.Pid(), what, ctx.Err(), last, m.Diagnostics())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Abort undoes a failed start: kills what runs, removes sockets and pid
// files, releases the share.
func (m *Machine) Abort(ctx context.Context) {
	if m.VMM != nil {
		if err := m.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).Errorf("%s start failed and %s could not be killed", m.Name, m.Name)
		}
	}
	if m.Fsd != nil {
		if err := m.Fsd.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).Errorf("%s start failed and virtiofsd could not be killed", m.Name)
		}
	}
	if err := m.Cleanup(); err != nil {
		log.G(ctx).WithError(err).Warnf("%s start failed: cleanup", m.Name)
	}
}

// Alive is nil while the VMM runs; once it has exited, an error saying
// how (errdefs.ErrUnavailable), with the guest kernel's panic message when
// the console has one (a crashed PID 1 panics the kernel, and the VMM
// exits as the kernel's panic setting makes it).
func (m *Machine) Alive() error {
	if m.VMM.Running() {
		return nil
	}
	msg := fmt.Sprintf("%s (pid %d) exited (%s)", m.Name, m.VMM.Pid(), m.VMM.ExitStatus())
	if p := KernelPanic(m.ConsoleTail(200)); p != "" {
		msg += " after a guest kernel panic: " + p
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrUnavailable)
}

// KernelPanic is the reason of the last kernel panic in a console text.
func KernelPanic(console string) string {
	const marker = "Kernel panic - not syncing: "
	i := strings.LastIndex(console, marker)
	if i < 0 {
		return ""
	}
	msg, _, _ := strings.Cut(console[i+len(marker):], "\n")
	return strings.TrimSpace(msg)
}

// helperOrphanGrace is how long the VMM may take to exit once its
// virtiofsd exited before it counts as orphaned.
const helperOrphanGrace = 2 * time.Second

// WatchHelpers ends the VM when its virtiofsd dies while the VMM runs
// (killed from outside, crashed): the guest's root file systems and
// volumes hang on a share with no server, so the pod is lost; ending the
// VMM makes that known (Done) rather than leaving a VM whose containers
// hang.
func (m *Machine) WatchHelpers(ctx context.Context) {
	if m.Fsd == nil {
		return
	}
	go func() {
		select {
		case <-m.VMM.Done():
			return
		case <-m.Fsd.Done():
		}
		// a guest that powers off disconnects virtiofsd just before the
		// VMM exits: only a VMM still running after that is orphaned
		select {
		case <-m.VMM.Done():
			return
		case <-time.After(helperOrphanGrace):
		}
		m.stopMu.Lock()
		defer m.stopMu.Unlock()
		if !m.VMM.Running() {
			return
		}
		log.G(ctx).WithFields(log.Fields{"sandbox_id": m.ID, "virtiofsd_pid": m.Fsd.Pid(), "exit": m.Fsd.ExitStatus()}).
			Errorf("virtiofsd exited while its VM runs: the pod's share is gone, stopping %s", m.Name)
		if err := m.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox_id", m.ID).Errorf("killing %s after virtiofsd exited", m.Name)
		}
	}()
}

// Done is closed when the VMM has exited.
func (m *Machine) Done() <-chan struct{} { return m.VMM.Done() }

// ExitedAt is when the VMM's exit was seen (zero while it runs).
func (m *Machine) ExitedAt() time.Time { return m.VMM.ExitedAt() }

// Pids are the VMM's pid, then virtiofsd's while it runs.
func (m *Machine) Pids() []int {
	p := []int{m.VMM.Pid()}
	if m.Fsd != nil && m.Fsd.Running() {
		p = append(p, m.Fsd.Pid())
	}
	return p
}

// Stop ends the VMM: Quit, then SIGKILL once ctx ends (Options.StopTimeout
// without a deadline), or SIGKILL at once with force. virtiofsd then gets
// Options.HelperGrace to follow its peer (none with force) before it is
// killed.
// Stop returns once both have exited; it is idempotent.
func (m *Machine) Stop(ctx context.Context, force bool) error {
	m.stopMu.Lock()
	defer m.stopMu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", m.ID))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.Options.StopTimeout)
		defer cancel()
	}
	var errs []error
	if m.VMM.Running() {
		if !force {
			if err := m.Quit(ctx); err != nil && m.VMM.Running() {
				log.G(ctx).WithError(err).Warnf("%s: quit failed", m.Name)
			}
			select {
			case <-m.VMM.Done():
			case <-ctx.Done():
				log.G(ctx).WithField("pid", m.VMM.Pid()).Warnf("%s did not exit in time: killing it", m.Name)
			}
		}
		if err := m.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if m.Fsd != nil {
		grace := m.Options.HelperGrace
		if force {
			grace = 0
		}
		if err := m.Fsd.Stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop vm %s: %w", m.ID, errors.Join(errs...))
	}
	log.G(ctx).WithField("status", m.VMM.ExitStatus()).Debugf("%s stopped", m.Name)
	return nil
}

// Cleanup removes the sockets and pid files of the run directory and
// undoes the share's bind mount if the start made it; the logs stay. The
// VMM must have exited (errdefs.ErrFailedPrecondition otherwise); a
// virtiofsd still there is killed. Idempotent.
func (m *Machine) Cleanup() error {
	m.stopMu.Lock()
	defer m.stopMu.Unlock()
	if m.VMM != nil && m.VMM.Running() {
		return fmt.Errorf("cleanup vm %s: %s (pid %d) still runs: stop it first: %w", m.ID, m.Name, m.VMM.Pid(), errdefs.ErrFailedPrecondition)
	}
	var errs []error
	if m.Fsd != nil {
		if err := m.Fsd.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.RemoveFiles(); err != nil {
		errs = append(errs, err)
	}
	if m.ShareMounted {
		if err := virtiofsd.ReleaseShare(m.Share); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup vm %s: %w", m.ID, errors.Join(errs...))
	}
	return nil
}

// RemoveFiles removes RunFiles and virtiofsd's socket and lock file
// (missing ones are fine). A start calls it first: what a previous run
// left would be taken for this one's.
func (m *Machine) RemoveFiles() error {
	var errs []error
	for _, name := range m.RunFiles {
		if err := os.Remove(m.Path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if m.VirtiofsSocket != "" {
		if err := virtiofsd.Cleanup(m.Path(m.VirtiofsSocket)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ConsoleTail is the last n lines of the guest console.
func (m *Machine) ConsoleTail(n int) string { return hostproc.Tail(m.Path(m.Console), n) }

// ExitedError is the error of a VMM that exited while it was needed
// (errdefs.ErrFailedPrecondition, with the logs).
func (m *Machine) ExitedError(when string) error {
	return fmt.Errorf("%s (pid %d) exited %s (%s)%s: %w", m.Name, m.VMM.Pid(), when, m.VMM.ExitStatus(), m.Diagnostics(), errdefs.ErrFailedPrecondition)
}

// Diagnostics are the ends of the logs, for errors ("; qemu: ... | ...").
func (m *Machine) Diagnostics() string {
	var b strings.Builder
	for _, l := range m.Logs {
		if t := hostproc.Tail(m.Path(l.File), 10); t != "" {
			fmt.Fprintf(&b, "; %s: %s", l.What, strings.ReplaceAll(t, "\n", " | "))
		}
	}
	return b.String()
}
