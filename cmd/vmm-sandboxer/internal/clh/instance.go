package clh

import (
	"context"
	"encoding/json"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// VM is one Cloud Hypervisor guest (vm.VM) with its virtiofsd. Its
// processes, their watch, Stop's escalation and Cleanup are
// vmhost.Machine's; the REST API is Cloud Hypervisor's.
type VM struct {
	*vmhost.Machine
	opts Options
	st   State
	api  *Client
}

var _ vm.VM = (*VM)(nil)

func newVM(h *Hypervisor, cfg *vm.Config) *VM {
	v := &VM{opts: h.opts, st: State{State: vmhost.NewState(Name, cfg, VsockSocket, VirtiofsSocket),
		Accel: AccelKVM, APISocket: filepath.Join(cfg.Dir, APISocket)}}
	v.init()
	return v
}

// init sets the Machine and the API client from the state.
func (v *VM) init() {
	v.api = NewClient(v.st.APISocket)
	v.Machine = &vmhost.Machine{Name: Name, ID: v.st.ID, Dir: v.st.Dir,
		Logs:     []vmhost.Log{{What: "cloud-hypervisor", File: CLHLog}, {What: "virtiofsd", File: VirtiofsdLog}, {What: "console", File: ConsoleLog}},
		Console:  ConsoleLog,
		RunFiles: []string{APISocket, VsockSocket}, VirtiofsSocket: VirtiofsSocket,
		Share: v.st.Share, ShareMounted: v.st.ShareMounted,
		Options: v.opts.Options, Quit: v.quit}
}

// Agent is where the agent is reached: the hybrid vsock socket and the
// agent's port.
func (v *VM) Agent() agentclient.Target { return v.st.AgentTarget() }

// API is the VM's REST API client.
func (v *VM) API() *Client { return v.api }

// Info asks Cloud Hypervisor for the VM (vm.info).
func (v *VM) Info(ctx context.Context) (*clhapi.VmInfo, error) { return v.api.Info(ctx) }

// quit is Stop's graceful step (vmhost.Machine.Stop: SIGKILL once its
// context ends, or at once with force; virtiofsd follows): vm.shutdown
// (the guest stops at once; the caller asked it to power off first) and
// vmm.shutdown (the VMM exits).
func (v *VM) quit(ctx context.Context) error {
	// a VM that is not running (404 not created, 405 not booted) is
	// fine: the VMM goes all the same
	if err := v.api.ShutdownVM(ctx); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		log.G(ctx).WithError(err).Debug("cloud-hypervisor: vm.shutdown")
	}
	return v.api.ShutdownVMM(ctx)
}

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	return vmhost.Encode(v.st.ID, v.st)
}
