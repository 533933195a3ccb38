package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// VM is one QEMU guest (vm.VM) with its virtiofsd. Its processes, their
// watch, Stop's escalation and Cleanup are vmhost.Host's; QMP is QEMU's.
type VM struct {
	*vmhost.Host
	opts Options
	st   State

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
	v.Host = v.host()
	v.st.QMPSocket = v.Path(QMPSocket)
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		v.st.AgentSocket = v.Path(AgentSocket)
	case vm.ChannelVsock:
		v.st.Agent.Port = cfg.VsockPort()
	}
	if cfg.Share != "" {
		v.st.Share, v.st.VirtiofsSocket = cfg.Share, v.Path(VirtiofsSocket)
	}
	return v
}

// host is the vmhost.Host of the VM's state (processes not yet set).
func (v *VM) host() *vmhost.Host {
	return &vmhost.Host{Name: Name, ID: v.st.ID, Dir: v.st.Dir, Log: QEMULog,
		RunFiles: []string{QMPSocket, AgentSocket, PidFile}, HelperGrace: v.opts.HelperGrace,
		Share: v.st.Share, ShareMounted: v.st.ShareMounted}
}

// Agent is where the agent is reached: the virtio-serial chardev socket,
// or the guest's CID and port.
func (v *VM) Agent() agentclient.Target {
	if v.st.Agent.Kind == vm.ChannelVsock {
		return agentclient.Target{VsockCID: v.st.Agent.CID, Port: v.st.Agent.Port}
	}
	return agentclient.Target{Serial: v.st.AgentSocket}
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
	return v.Host.Stop(ctx, force, v.opts.StopTimeout, func(ctx context.Context) error {
		return v.withQMP(ctx, func(q *QMP) error { return q.Quit(ctx) })
	})
}

// Cleanup removes the sockets and pid files of the run directory and
// undoes the share's bind mount if Start made it (see package virtiofsd);
// the logs stay. QEMU must have exited (errdefs.ErrFailedPrecondition
// otherwise); a virtiofsd still there is killed. Idempotent.
func (v *VM) Cleanup() error { return v.Host.Cleanup() }

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	b, err := json.Marshal(v.st)
	if err != nil {
		return nil, fmt.Errorf("vm %s state: %w", v.st.ID, err)
	}
	return b, nil
}
