package clh

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// State is a VM as persisted (vm.VM.State) and recovered
// (Hypervisor.Recover): what every driver persists (vmhost.State: the
// sandbox, virtiofsd, the agent's hybrid vsock socket and port, the
// share), Cloud Hypervisor's process with its start time, its API socket
// and the accelerator.
type State struct {
	vmhost.State
	// Accel is the accelerator (kvm).
	Accel string `json:"accel"`
	// CLH identifies Cloud Hypervisor's process.
	CLH hostproc.ID `json:"cloud_hypervisor"`
	// APISocket is the REST API's socket in Dir.
	APISocket string `json:"api_socket"`
}

// validate checks a decoded State; errors wrap errdefs.ErrInvalidArgument.
func (s *State) validate() error {
	if err := s.Validate(Name, s.CLH.Pid, vm.ChannelHybridVsock); err != nil {
		return err
	}
	if !filepath.IsAbs(s.APISocket) {
		return fmt.Errorf("cloud-hypervisor vm state (id %q): no API socket: %w", s.ID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Recover finds a VM again from its State: Cloud Hypervisor and virtiofsd
// are watched again if they still run (same pid and start time, see
// package hostproc), then the API socket is asked (vmm.ping, vm.info) and
// the hybrid vsock socket dialled (a connection without CONNECT, which the
// VMM drops), bounded by RecoverTimeout: a VMM that does not answer is
// logged, and returned all the same (the pod's agent dial decides). A VM
// whose VMM is gone comes back already Done; a virtiofsd that outlived it
// is killed. A State that does not decode or is not Cloud Hypervisor's
// fails with errdefs.ErrInvalidArgument.
func (h *Hypervisor) Recover(ctx context.Context, state json.RawMessage) (vm.VM, error) {
	var st State
	if err := vmhost.Decode(Name, state, &st); err != nil {
		return nil, err
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", st.ID))
	v := &VM{opts: h.opts, st: st}
	v.init()
	if err := v.Machine.Recover(ctx, st.CLH, st.Virtiofsd, VirtiofsdLog); err != nil {
		return nil, err
	}
	lg := log.G(ctx).WithFields(log.Fields{"pid": st.CLH.Pid, "running": v.VMM.Running()})
	if v.VMM.Running() {
		state, err := v.reconnect(ctx)
		if err != nil {
			lg.WithError(err).Warn("cloud-hypervisor vm recovered, but it does not answer")
			return v, nil
		}
		lg = lg.WithField("vm_state", state)
	}
	lg.Info("cloud-hypervisor vm recovered")
	return v, nil
}

// reconnect asks the API for the VM's state and checks that the hybrid
// vsock socket is served.
func (v *VM) reconnect(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.RecoverTimeout)
	defer cancel()
	if _, err := v.api.Ping(ctx); err != nil {
		return "", err
	}
	info, err := v.api.Info(ctx)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", v.st.AgentSocket)
	if err != nil {
		return string(info.State), fmt.Errorf("hybrid vsock socket: %w", err)
	}
	c.Close()
	return string(info.State), nil
}
