package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// VM is one QEMU guest (vm.VM) with its virtiofsd: QEMU's command line,
// QMP and state on the host side every driver shares (vmhost.Machine).
type VM struct {
	*vmhost.Machine
	st State

	// qmpMu serializes our QMP connections: QEMU serves one at a time and
	// would keep a second waiting in its backlog.
	qmpMu sync.Mutex
}

var _ vm.VM = (*VM)(nil)

// qmpOptions are QEMU's QMP: capabilities negotiation, ids.
var qmpOptions = qmp.Options{Capabilities: true, IDs: true}

// newVM is the VM of st (its processes not set yet).
func newVM(h *Hypervisor, st State) *VM {
	v := &VM{st: st}
	v.Machine = &vmhost.Machine{
		Name: Name, ID: st.ID, Dir: st.Dir,
		Logs:     []vmhost.Log{{What: "qemu", File: QEMULog}, {What: "virtiofsd", File: VirtiofsdLog}, {What: "console", File: ConsoleLog}},
		Console:  ConsoleLog,
		RunFiles: []string{QMPSocket, AgentSocket, PidFile}, VirtiofsSocket: VirtiofsSocket,
		Share: st.Share, ShareMounted: st.ShareMounted,
		StopTimeout: h.opts.StopTimeout, HelperGrace: h.opts.HelperGrace,
		Quit: func(ctx context.Context) error {
			return v.withQMP(ctx, func(q *qmp.Client) error { return q.Quit(ctx) })
		},
	}
	return v
}

// startState is the State of a VM about to start for cfg.
func startState(cfg *vm.Config, accel string) State {
	st := State{Hypervisor: Name, ID: cfg.ID, Dir: cfg.Dir, Accel: accel, Agent: AgentState{Kind: cfg.Agent.Kind}}
	st.QMPSocket = filepath.Join(cfg.Dir, QMPSocket)
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		st.AgentSocket = filepath.Join(cfg.Dir, AgentSocket)
	case vm.ChannelVsock:
		st.Agent.Port = vsockPort(cfg)
	}
	if cfg.Share != "" {
		st.Share, st.VirtiofsSocket = cfg.Share, filepath.Join(cfg.Dir, VirtiofsSocket)
	}
	return st
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
func (v *VM) Status(ctx context.Context) (qmp.Status, error) {
	var st qmp.Status
	err := v.withQMP(ctx, func(q *qmp.Client) (err error) {
		st, err = q.QueryStatus(ctx)
		return err
	})
	return st, err
}

// withQMP runs f on a fresh QMP connection (closed afterwards).
func (v *VM) withQMP(ctx context.Context, f func(q *qmp.Client) error) error {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	q, err := qmp.Dial(ctx, v.st.QMPSocket, qmpOptions)
	if err != nil {
		return err
	}
	defer q.Close()
	return f(q)
}

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	b, err := json.Marshal(v.st)
	if err != nil {
		return nil, fmt.Errorf("vm %s state: %w", v.st.ID, err)
	}
	return b, nil
}
