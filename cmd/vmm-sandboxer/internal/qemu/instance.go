package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// VM is one QEMU guest (vm.VM) with its virtiofsd.
type VM struct {
	opts Options
	st   State
	qemu *hostproc.Process
	fsd  *virtiofsd.Daemon // nil without a share

	// stopMu serializes Stop (and Cleanup) calls.
	stopMu sync.Mutex
	// qmpMu serializes our QMP connections: QEMU serves one at a time and
	// would keep a second waiting in its backlog.
	qmpMu sync.Mutex
}

var _ vm.VM = (*VM)(nil)

func newVM(h *Hypervisor, cfg *vm.Config, accel string) *VM {
	v := &VM{opts: h.opts, st: State{
		Hypervisor: Name, ID: cfg.ID, Dir: cfg.Dir, Accel: accel,
		Agent: AgentState{Kind: cfg.Agent.Kind},
	}}
	v.st.QMPSocket = v.path(QMPSocket)
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		v.st.AgentSocket = v.path(AgentSocket)
	case vm.ChannelVsock:
		v.st.Agent.Port = vsockPort(cfg)
	}
	if cfg.Share != "" {
		v.st.Share, v.st.VirtiofsSocket = cfg.Share, v.path(VirtiofsSocket)
	}
	return v
}

// Agent is where the agent is reached: the virtio-serial chardev socket,
// or the guest's CID and port.
func (v *VM) Agent() agentclient.Target {
	if v.st.Agent.Kind == vm.ChannelVsock {
		return agentclient.Target{VsockCID: v.st.Agent.CID, Port: v.st.Agent.Port}
	}
	return agentclient.Target{Serial: v.st.AgentSocket}
}

// Alive is nil while QEMU runs; once it has exited, an error saying how,
// with the guest kernel's panic message when the console has one (a
// crashed PID 1 panics the kernel, and panic=-1 with -no-reboot turns that
// into QEMU exiting 0).
func (v *VM) Alive() error {
	if v.qemu.Running() {
		return nil
	}
	msg := fmt.Sprintf("qemu (pid %d) exited (%s)", v.qemu.Pid(), v.qemu.ExitStatus())
	if p := panicMessage(v.ConsoleTail(200)); p != "" {
		msg += " after a guest kernel panic: " + p
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrUnavailable)
}

// panicMessage is the reason of the last kernel panic in a console text.
func panicMessage(console string) string {
	const marker = "Kernel panic - not syncing: "
	i := strings.LastIndex(console, marker)
	if i < 0 {
		return ""
	}
	msg, _, _ := strings.Cut(console[i+len(marker):], "\n")
	return strings.TrimSpace(msg)
}

// helperOrphanGrace is how long QEMU may take to exit once its virtiofsd
// exited before it counts as orphaned.
const helperOrphanGrace = 2 * time.Second

// watchHelpers ends the VM when its virtiofsd dies while QEMU runs (killed
// from outside, crashed): the guest's root file systems and volumes hang on
// a share with no server, so the pod is lost; ending QEMU makes that known
// (Done) rather than leaving a VM whose containers hang.
func (v *VM) watchHelpers(ctx context.Context) {
	if v.fsd == nil {
		return
	}
	go func() {
		select {
		case <-v.qemu.Done():
			return
		case <-v.fsd.Done():
		}
		// a guest that powers off disconnects virtiofsd just before QEMU
		// exits: only a QEMU still running after that is orphaned
		select {
		case <-v.qemu.Done():
			return
		case <-time.After(helperOrphanGrace):
		}
		v.stopMu.Lock()
		defer v.stopMu.Unlock()
		if !v.qemu.Running() {
			return
		}
		log.G(ctx).WithFields(log.Fields{"sandbox_id": v.st.ID, "virtiofsd_pid": v.fsd.Pid(), "exit": v.fsd.ExitStatus()}).
			Error("virtiofsd exited while its VM runs: the pod's share is gone, stopping the VM")
		if err := v.qemu.KillWait(hostproc.DefaultKillWait); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox_id", v.st.ID).Error("killing qemu after virtiofsd exited")
		}
	}()
}

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.qemu.Done() }

// ExitedAt is when QEMU's exit was seen (zero while it runs).
func (v *VM) ExitedAt() time.Time { return v.qemu.ExitedAt() }

// Pids are QEMU's pid, then virtiofsd's while it runs.
func (v *VM) Pids() []int {
	p := []int{v.qemu.Pid()}
	if v.fsd != nil && v.fsd.Running() {
		p = append(p, v.fsd.Pid())
	}
	return p
}

// Status asks QEMU for the VM's run state over QMP (a ping).
func (v *VM) Status(ctx context.Context) (Status, error) {
	var st Status
	err := v.withQMP(ctx, func(q *QMP) (err error) {
		st, err = q.QueryStatus(ctx)
		return err
	})
	return st, err
}

// withQMP runs f on a fresh QMP connection (closed afterwards).
func (v *VM) withQMP(ctx context.Context, f func(q *QMP) error) error {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	q, err := DialQMP(ctx, v.st.QMPSocket)
	if err != nil {
		return err
	}
	defer q.Close()
	return f(q)
}

// Stop ends QEMU: QMP quit, then SIGKILL once ctx ends (DefaultStopTimeout
// without a deadline), or SIGKILL at once with force. virtiofsd then gets
// HelperGrace to follow its peer (none with force) before it is killed.
// Stop returns once both have exited; it is idempotent.
func (v *VM) Stop(ctx context.Context, force bool) error {
	v.stopMu.Lock()
	defer v.stopMu.Unlock()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", v.st.ID))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.opts.StopTimeout)
		defer cancel()
	}
	var errs []error
	if v.qemu.Running() {
		if !force {
			if err := v.withQMP(ctx, func(q *QMP) error { return q.Quit(ctx) }); err != nil && v.qemu.Running() {
				log.G(ctx).WithError(err).Warn("qemu: quit over qmp failed")
			}
			select {
			case <-v.qemu.Done():
			case <-ctx.Done():
				log.G(ctx).WithField("pid", v.qemu.Pid()).Warn("qemu did not exit in time: killing it")
			}
		}
		if err := v.qemu.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if v.fsd != nil {
		grace := v.opts.HelperGrace
		if force {
			grace = 0
		}
		if err := v.fsd.Stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop vm %s: %w", v.st.ID, errors.Join(errs...))
	}
	log.G(ctx).WithField("status", v.qemu.ExitStatus()).Debug("qemu stopped")
	return nil
}

// Cleanup removes the sockets and pid files of the run directory and
// undoes the share's bind mount if Start made it (see package virtiofsd);
// the logs stay. QEMU must have exited (errdefs.ErrFailedPrecondition
// otherwise); a virtiofsd still there is killed. Idempotent.
func (v *VM) Cleanup() error {
	v.stopMu.Lock()
	defer v.stopMu.Unlock()
	if v.qemu != nil && v.qemu.Running() {
		return fmt.Errorf("cleanup vm %s: qemu (pid %d) still runs: stop it first: %w", v.st.ID, v.qemu.Pid(), errdefs.ErrFailedPrecondition)
	}
	var errs []error
	if v.fsd != nil {
		if err := v.fsd.KillWait(hostproc.DefaultKillWait); err != nil {
			errs = append(errs, err)
		}
	}
	if err := v.removeFiles(); err != nil {
		errs = append(errs, err)
	}
	if v.st.ShareMounted {
		if err := virtiofsd.ReleaseShare(v.st.Share); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup vm %s: %w", v.st.ID, errors.Join(errs...))
	}
	return nil
}

// removeFiles removes the sockets and pid files of the run directory
// (missing ones are fine).
func (v *VM) removeFiles() error {
	var errs []error
	for _, name := range []string{QMPSocket, AgentSocket, PidFile} {
		if err := os.Remove(v.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := virtiofsd.Cleanup(v.path(VirtiofsSocket)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ConsoleTail is the last n lines of the guest console.
func (v *VM) ConsoleTail(n int) string { return hostproc.Tail(v.path(ConsoleLog), n) }

// exitedError is the error of a QEMU that exited while it was needed.
func (v *VM) exitedError(when string) error {
	return fmt.Errorf("qemu (pid %d) exited %s (%s)%s: %w", v.qemu.Pid(), when, v.qemu.ExitStatus(), v.diagnostics(), errdefs.ErrFailedPrecondition)
}

// diagnostics are the ends of QEMU's log, virtiofsd's log and the console,
// for errors.
func (v *VM) diagnostics() string {
	var b strings.Builder
	for _, l := range []struct{ what, file string }{{"qemu", QEMULog}, {"virtiofsd", VirtiofsdLog}, {"console", ConsoleLog}} {
		if t := hostproc.Tail(v.path(l.file), 10); t != "" {
			fmt.Fprintf(&b, "; %s: %s", l.what, strings.ReplaceAll(t, "\n", " | "))
		}
	}
	return b.String()
}

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	b, err := json.Marshal(v.st)
	if err != nil {
		return nil, fmt.Errorf("vm %s state: %w", v.st.ID, err)
	}
	return b, nil
}
