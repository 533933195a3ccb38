package qemu

import (
	"context"
	"encoding/json"
	"path/filepath"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// VM is one QEMU guest (vm.VM) with its virtiofsd: QEMU's command line,
// QMP and state on the host side every driver shares (vmhost.Machine).
type VM struct {
	*vmhost.Machine
	st  State
	qmp *qmp.Monitor
}

var _ vm.VM = (*VM)(nil)

// qmpOptions are QEMU's QMP: capabilities negotiation, ids.
var qmpOptions = qmp.Options{Capabilities: true, IDs: true}

// newVM is the VM of st (its processes not set yet).
func newVM(h *Hypervisor, st State) *VM {
	v := &VM{st: st, qmp: &qmp.Monitor{Path: st.QMPSocket, Options: qmpOptions}}
	v.Machine = &vmhost.Machine{
		Name: Name, ID: st.ID, Dir: st.Dir,
		Logs:     []vmhost.Log{{What: "qemu", File: QEMULog}, {What: "virtiofsd", File: VirtiofsdLog}, {What: "console", File: ConsoleLog}},
		Console:  ConsoleLog,
		RunFiles: []string{QMPSocket, AgentSocket, PidFile}, VirtiofsSocket: VirtiofsSocket,
		Share: st.Share, ShareMounted: st.ShareMounted,
		Options: h.opts, Quit: v.qmp.Quit,
	}
	return v
}

// startState is the State of a VM about to start for cfg.
func startState(cfg *vm.Config, accel string) State {
	return State{State: vmhost.NewState(Name, cfg, AgentSocket, VirtiofsSocket), Accel: accel, QMPSocket: filepath.Join(cfg.Dir, QMPSocket)}
}

// Agent is where the agent is reached: the virtio-serial chardev socket,
// or the guest's CID and port.
func (v *VM) Agent() agentclient.Target { return v.st.AgentTarget() }

// Status asks QEMU for the VM's run state over QMP (a ping).
func (v *VM) Status(ctx context.Context) (qmp.Status, error) { return v.qmp.Status(ctx) }

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	return vmhost.Encode(v.st.ID, v.st)
}
