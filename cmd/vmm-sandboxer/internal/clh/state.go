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
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// State is a VM as persisted (vm.VM.State) and recovered
// (Hypervisor.Recover): the processes with their start times and the
// sockets.
type State struct {
	// Hypervisor is Name; Recover refuses another.
	Hypervisor string `json:"hypervisor"`
	// ID, Dir and Accel are the sandbox id, the run directory and the
	// accelerator (kvm).
	ID    string `json:"id"`
	Dir   string `json:"dir"`
	Accel string `json:"accel"`
	// CLH and Virtiofsd (nil without a share) identify the processes.
	CLH       hostproc.ID  `json:"cloud_hypervisor"`
	Virtiofsd *hostproc.ID `json:"virtiofsd,omitempty"`
	// APISocket, VsockSocket and VirtiofsSocket (with a share) are the
	// unix sockets in Dir.
	APISocket      string `json:"api_socket"`
	VsockSocket    string `json:"vsock_socket"`
	VirtiofsSocket string `json:"virtiofs_socket,omitempty"`
	// AgentPort is the agent's vsock port.
	AgentPort uint32 `json:"agent_port"`
	// Share is the exported directory; ShareMounted says Start
	// bind-mounted it onto itself (Cleanup undoes it).
	Share        string `json:"share,omitempty"`
	ShareMounted bool   `json:"share_mounted,omitempty"`
}

// validate checks a decoded State; errors wrap errdefs.ErrInvalidArgument.
func (s *State) validate() error {
	bad := func(why string) error {
		return fmt.Errorf("cloud-hypervisor vm state (id %q): %s: %w", s.ID, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case s.Hypervisor != Name:
		return bad(fmt.Sprintf("hypervisor %q, not %q", s.Hypervisor, Name))
	case s.ID == "" || !filepath.IsAbs(s.Dir):
		return bad("no id or run directory")
	case !filepath.IsAbs(s.APISocket) || !filepath.IsAbs(s.VsockSocket):
		return bad("no API or vsock socket")
	case s.CLH.Pid <= 0:
		return bad("no cloud-hypervisor pid")
	case s.AgentPort == 0:
		return bad("no agent port")
	case s.Virtiofsd != nil && (s.Share == "" || s.VirtiofsSocket == ""):
		return bad("virtiofsd without a share or socket")
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
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("cloud-hypervisor vm state: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", st.ID))
	v := &VM{opts: h.opts, st: st}
	v.init()
	if err := v.Host.Recover(ctx, st.CLH, st.Virtiofsd); err != nil {
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
	c, err := d.DialContext(ctx, "unix", v.st.VsockSocket)
	if err != nil {
		return string(info.State), fmt.Errorf("hybrid vsock socket: %w", err)
	}
	c.Close()
	return string(info.State), nil
}
