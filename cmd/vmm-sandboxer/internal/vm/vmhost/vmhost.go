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
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Files every VM has in its run directory.
const (
	// ConsoleLog is the guest's serial console.
	ConsoleLog = "console.log"
	// VirtiofsSocket is virtiofsd's vhost-user socket.
	VirtiofsSocket = "virtiofs.sock"
	// VirtiofsdLog is virtiofsd's stdout and stderr.
	VirtiofsdLog = "virtiofsd.log"
)

// DefaultHelperGrace is how long Stop lets virtiofsd end by itself once
// the VMM has exited (it does when its vhost-user peer goes).
const DefaultHelperGrace = 2 * time.Second

// helperOrphanGrace is how long the VMM may take to exit once its
// virtiofsd exited before it counts as orphaned.
const helperOrphanGrace = 2 * time.Second

// Host is one VM's host processes. The driver fills the exported fields
// before use (Start, Recover); they do not change afterwards.
type Host struct {
	// Name is the VMM's name in messages ("qemu", "cloud-hypervisor").
	Name string
	// ID is the sandbox id (logs) and Dir the run directory.
	ID, Dir string
	// Log is the VMM's own log file in Dir (its stdout and stderr).
	Log string
	// RunFiles are the files in Dir that Cleanup removes (sockets, pid
	// files); virtiofsd's socket and lock files are removed as well.
	RunFiles []string
	// HelperGrace is how long virtiofsd may take to exit after the VMM
	// (DefaultHelperGrace when 0).
	HelperGrace time.Duration

	// VMM is the VMM process; FSD its virtiofsd (nil without a share).
	VMM *hostproc.Process
	FSD *virtiofsd.Daemon
	// Share is the exported directory; ShareMounted says it was
	// bind-mounted onto itself (Cleanup undoes it).
	Share        string
	ShareMounted bool

	// mu serializes Stop, Cleanup and the helper watch's kill.
	mu sync.Mutex
}

// Path is name in the run directory.
func (h *Host) Path(name string) string { return filepath.Join(h.Dir, name) }

// StartVirtiofsd starts virtiofsd for cfg's share on VirtiofsSocket in the
// run directory (package virtiofsd: the share prepared, the socket
// listening), in cfg.Cgroup.
func (h *Host) StartVirtiofsd(ctx context.Context, cfg *vm.Config) error {
	fsd, err := virtiofsd.Start(ctx, virtiofsd.Config{
		ID: cfg.ID, Binary: cfg.Helpers[vm.HelperVirtiofsd], Socket: h.Path(VirtiofsSocket), Source: cfg.Share,
		Log: h.Path(VirtiofsdLog), Cgroup: cfg.Cgroup,
	})
	if err != nil {
		return err
	}
	h.FSD, h.Share, h.ShareMounted = fsd, cfg.Share, fsd.ShareMounted()
	return nil
}

// Done is closed when the VMM has exited.
func (h *Host) Done() <-chan struct{} { return h.VMM.Done() }

// ExitedAt is when the VMM's exit was seen (zero while it runs).
func (h *Host) ExitedAt() time.Time { return h.VMM.ExitedAt() }

// Pids are the VMM's pid, then virtiofsd's while it runs.
func (h *Host) Pids() []int {
	p := []int{h.VMM.Pid()}
	if h.FSD != nil && h.FSD.Running() {
		p = append(p, h.FSD.Pid())
	}
	return p
}

// Alive is nil while the VMM runs; once it has exited, an error
// (errdefs.ErrUnavailable) saying how, with the guest kernel's panic
// message when the console has one.
func (h *Host) Alive() error {
	if h.VMM.Running() {
		return nil
	}
	msg := fmt.Sprintf("%s (pid %d) exited (%s)", h.Name, h.VMM.Pid(), h.VMM.ExitStatus())
	if p := PanicMessage(h.ConsoleTail(200)); p != "" {
		msg += " after a guest kernel panic: " + p
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrUnavailable)
}

// PanicMessage is the reason of the last kernel panic in a console text.
func PanicMessage(console string) string {
	const marker = "Kernel panic - not syncing: "
	i := strings.LastIndex(console, marker)
	if i < 0 {
		return ""
	}
	msg, _, _ := strings.Cut(console[i+len(marker):], "\n")
	return strings.TrimSpace(msg)
}

// ConsoleTail is the last n lines of the guest console.
func (h *Host) ConsoleTail(n int) string { return hostproc.Tail(h.Path(ConsoleLog), n) }

// WatchHelpers ends the VM when its virtiofsd dies while the VMM runs
// (killed from outside, crashed): the guest's root file systems and
// volumes hang on a share with no server, so the pod is lost; ending the
// VMM makes that known (Done) rather than leaving a VM whose containers
// hang.
func (h *Host) WatchHelpers(ctx context.Context) {
	if h.FSD == nil {
		return
	}
	go func() {
		select {
		case <-h.VMM.Done():
			return
		case <-h.FSD.Done():
		}
		// a guest that powers off disconnects virtiofsd just before the
		// VMM exits: only a VMM still running after that is orphaned
		select {
		case <-h.VMM.Done():
			return
		case <-time.After(helperOrphanGrace):
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.VMM.Running() {
			return
		}
		log.G(ctx).WithFields(log.Fields{"sandbox_id": h.ID, "virtiofsd_pid": h.FSD.Pid(), "exit": h.FSD.ExitStatus()}).
			Errorf("virtiofsd exited while its VM runs: the pod's share is gone, stopping %s", h.Name)
		if err := h.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox_id", h.ID).Errorf("killing %s after virtiofsd exited", h.Name)
		}
	}()
}

// WaitReady calls try until it succeeds; it fails when the VMM exits first
// (errdefs.ErrFailedPrecondition with the logs' tails) or ctx ends (with
// try's last error). The VMM may accept connections before it answers:
// try is the driver's first real exchange on its control channel.
func (h *Host) WaitReady(ctx context.Context, what string, try func(ctx context.Context) error) error {
	var last error
	for {
		err := try(ctx)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-h.VMM.Done():
			return h.ExitedError("during start")
		case <-ctx.Done():
			// the VMM may have died in the last moment: say so rather
			// than time out
			select {
			case <-h.VMM.Done():
				return h.ExitedError("during start")
			case <-time.After(100 * time.Millisecond):
			}
			return fmt.Errorf("%s (pid %d) did not answer on %s: %w (last: %v)%s", h.Name, h.VMM.Pid(), what, ctx.Err(), last, h.Diagnostics())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ExitedError is the error of a VMM that exited while it was needed
// (errdefs.ErrFailedPrecondition).
func (h *Host) ExitedError(when string) error {
	return fmt.Errorf("%s (pid %d) exited %s (%s)%s: %w", h.Name, h.VMM.Pid(), when, h.VMM.ExitStatus(), h.Diagnostics(), errdefs.ErrFailedPrecondition)
}

// Diagnostics are the ends of the VMM's log, virtiofsd's log and the
// console, for errors.
func (h *Host) Diagnostics() string {
	var b strings.Builder
	for _, l := range []struct{ what, file string }{{h.Name, h.Log}, {"virtiofsd", VirtiofsdLog}, {"console", ConsoleLog}} {
		if l.file == "" {
			continue
		}
		if t := hostproc.Tail(h.Path(l.file), 10); t != "" {
			fmt.Fprintf(&b, "; %s: %s", l.what, strings.ReplaceAll(t, "\n", " | "))
		}
	}
	return b.String()
}

// Stop ends the VMM: quit (the driver's request on its control channel;
// nil: none), then SIGKILL once ctx ends (defaultTimeout when ctx has no
// deadline), or SIGKILL at once with force. virtiofsd then gets
// HelperGrace to follow its peer (none with force) before it is killed.
// Stop returns once both have exited; it is idempotent.
func (h *Host) Stop(ctx context.Context, force bool, defaultTimeout time.Duration, quit func(ctx context.Context) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", h.ID))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	var errs []error
	if h.VMM.Running() {
		if !force && quit != nil {
			if err := quit(ctx); err != nil && h.VMM.Running() {
				log.G(ctx).WithError(err).Warnf("%s: asking it to quit failed", h.Name)
			}
			select {
			case <-h.VMM.Done():
			case <-ctx.Done():
				log.G(ctx).WithField("pid", h.VMM.Pid()).Warnf("%s did not exit in time: killing it", h.Name)
			}
		}
		if err := h.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if h.FSD != nil {
		grace := h.HelperGrace
		if grace == 0 {
			grace = DefaultHelperGrace
		}
		if force {
			grace = 0
		}
		if err := h.FSD.Stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop vm %s: %w", h.ID, errors.Join(errs...))
	}
	log.G(ctx).WithField("status", h.VMM.ExitStatus()).Debugf("%s stopped", h.Name)
	return nil
}

// Cleanup removes the run files, virtiofsd's socket and lock files and
// undoes the share's bind mount if it was made; the logs stay. The VMM
// must have exited (errdefs.ErrFailedPrecondition otherwise); a virtiofsd
// still there is killed. Idempotent.
func (h *Host) Cleanup() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.VMM != nil && h.VMM.Running() {
		return fmt.Errorf("cleanup vm %s: %s (pid %d) still runs: stop it first: %w", h.ID, h.Name, h.VMM.Pid(), errdefs.ErrFailedPrecondition)
	}
	var errs []error
	if h.FSD != nil {
		if err := h.FSD.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if err := h.RemoveFiles(); err != nil {
		errs = append(errs, err)
	}
	if h.ShareMounted {
		if err := virtiofsd.ReleaseShare(h.Share); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup vm %s: %w", h.ID, errors.Join(errs...))
	}
	return nil
}

// RemoveFiles removes the run files and virtiofsd's socket and lock files
// (missing ones are fine).
func (h *Host) RemoveFiles() error {
	var errs []error
	for _, name := range h.RunFiles {
		if err := os.Remove(h.Path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := virtiofsd.Cleanup(h.Path(VirtiofsSocket)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Abort undoes a failed start: kills what runs, removes the run files,
// releases the share.
func (h *Host) Abort(ctx context.Context) {
	if h.VMM != nil {
		if err := h.VMM.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).Errorf("%s start failed and %s could not be killed", h.Name, h.Name)
		}
	}
	if h.FSD != nil {
		if err := h.FSD.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).Errorf("%s start failed and virtiofsd could not be killed", h.Name)
		}
	}
	if err := h.Cleanup(); err != nil {
		log.G(ctx).WithError(err).Warnf("%s start failed: cleanup", h.Name)
	}
}

// Recover finds the processes of a VM again: the VMM (and virtiofsd, when
// fsd is set) are watched again if they still run (same pid and start
// time); a virtiofsd that outlived its VMM is killed. The helper watch is
// started.
func (h *Host) Recover(ctx context.Context, vmm hostproc.ID, fsd *hostproc.ID) error {
	h.VMM = hostproc.Recover(h.Name, vmm)
	if fsd != nil {
		h.FSD = virtiofsd.Recover(virtiofsd.Config{ID: h.ID, Socket: h.Path(VirtiofsSocket), Source: h.Share, Log: h.Path(VirtiofsdLog)},
			*fsd, h.ShareMounted)
		if !h.VMM.Running() && h.FSD.Running() {
			log.G(ctx).WithField("pid", h.FSD.Pid()).Infof("virtiofsd outlived its %s: killing it", h.Name)
			if err := h.FSD.KillWait(hostproc.DefaultKillWait); err != nil {
				return fmt.Errorf("recover vm %s: %w", h.ID, err)
			}
		}
	}
	h.WatchHelpers(context.WithoutCancel(ctx))
	return nil
}
