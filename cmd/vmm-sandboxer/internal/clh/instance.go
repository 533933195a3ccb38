package clh

import (
	"context"
	"encoding/json"
	"fmt"
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
// vmhost.Host's; the REST API is Cloud Hypervisor's.
type VM struct {
	*vmhost.Host
	opts Options
	st   State
	api  *Client
}

var _ vm.VM = (*VM)(nil)

func newVM(h *Hypervisor, cfg *vm.Config) *VM {
	v := &VM{opts: h.opts, st: State{
		Hypervisor: Name, ID: cfg.ID, Dir: cfg.Dir, Accel: AccelKVM,
		APISocket: filepath.Join(cfg.Dir, APISocket), VsockSocket: filepath.Join(cfg.Dir, VsockSocket), AgentPort: cfg.VsockPort(),
	}}
	if cfg.Share != "" {
		v.st.Share, v.st.VirtiofsSocket = cfg.Share, filepath.Join(cfg.Dir, VirtiofsSocket)
	}
	v.init()
	return v
}

// init sets the Host and the API client from the state.
func (v *VM) init() {
	v.Host = &vmhost.Host{Name: Name, ID: v.st.ID, Dir: v.st.Dir, Log: CLHLog,
		RunFiles: []string{APISocket, VsockSocket}, HelperGrace: v.opts.HelperGrace,
		Share: v.st.Share, ShareMounted: v.st.ShareMounted}
	v.api = NewClient(v.st.APISocket)
}

// Agent is where the agent is reached: the hybrid vsock socket and the
// agent's port.
func (v *VM) Agent() agentclient.Target {
	return agentclient.Target{HybridVsock: v.st.VsockSocket, Port: v.st.AgentPort}
}

// API is the VM's REST API client.
func (v *VM) API() *Client { return v.api }

// Info asks Cloud Hypervisor for the VM (vm.info).
func (v *VM) Info(ctx context.Context) (*clhapi.VmInfo, error) { return v.api.Info(ctx) }

// Stop ends Cloud Hypervisor: vm.shutdown (the guest stops at once; the
// caller asked it to power off first) and vmm.shutdown (the VMM exits),
// then SIGKILL once ctx ends (DefaultStopTimeout without a deadline), or
// SIGKILL at once with force. virtiofsd then gets HelperGrace to follow its
// peer (none with force) before it is killed. Stop returns once both have
// exited; it is idempotent.
func (v *VM) Stop(ctx context.Context, force bool) error {
	return v.Host.Stop(ctx, force, v.opts.StopTimeout, func(ctx context.Context) error {
		// a VM that is not running (404 not created, 405 not booted) is
		// fine: the VMM goes all the same
		if err := v.api.ShutdownVM(ctx); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			log.G(ctx).WithError(err).Debug("cloud-hypervisor: vm.shutdown")
		}
		return v.api.ShutdownVMM(ctx)
	})
}

// Cleanup removes the API and vsock sockets and virtiofsd's, and undoes
// the share's bind mount if Start made it; the logs stay. Cloud Hypervisor
// must have exited (errdefs.ErrFailedPrecondition otherwise); a virtiofsd
// still there is killed. Idempotent.
func (v *VM) Cleanup() error { return v.Host.Cleanup() }

// State is what Recover needs (JSON of State).
func (v *VM) State() (json.RawMessage, error) {
	b, err := json.Marshal(v.st)
	if err != nil {
		return nil, fmt.Errorf("vm %s state: %w", v.st.ID, err)
	}
	return b, nil
}
