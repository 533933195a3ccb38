package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// State is a VM as persisted (vm.VM.State) and recovered
// (Hypervisor.Recover): the processes with their start times, the sockets,
// the accelerator and the agent's address.
type State struct {
	// Hypervisor is Name; Recover refuses another.
	Hypervisor string `json:"hypervisor"`
	// ID, Dir and Accel are the sandbox id, the run directory and the
	// accelerator QEMU runs with.
	ID    string `json:"id"`
	Dir   string `json:"dir"`
	Accel string `json:"accel"`
	// QEMU and Virtiofsd (nil without a share) identify the processes.
	QEMU      hostproc.ID  `json:"qemu"`
	Virtiofsd *hostproc.ID `json:"virtiofsd,omitempty"`
	// QMPSocket, AgentSocket (serial channel) and VirtiofsSocket (with a
	// share) are the unix sockets in Dir.
	QMPSocket      string `json:"qmp_socket"`
	AgentSocket    string `json:"agent_socket,omitempty"`
	VirtiofsSocket string `json:"virtiofs_socket,omitempty"`
	// Share is the exported directory; ShareMounted says Start
	// bind-mounted it onto itself (Cleanup undoes it).
	Share        string `json:"share,omitempty"`
	ShareMounted bool   `json:"share_mounted,omitempty"`
	// Agent is the agent channel as configured and allocated.
	Agent AgentState `json:"agent"`
}

// AgentState is the agent channel of a VM.
type AgentState struct {
	// Kind is vm.ChannelSerial or vm.ChannelVsock.
	Kind string `json:"kind"`
	// CID and Port are the vsock address (vsock only).
	CID  uint32 `json:"cid,omitempty"`
	Port uint32 `json:"port,omitempty"`
}

// validate checks a decoded State; errors wrap errdefs.ErrInvalidArgument.
func (s *State) validate() error {
	bad := func(why string) error {
		return fmt.Errorf("qemu vm state (id %q): %s: %w", s.ID, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case s.Hypervisor != Name:
		return bad(fmt.Sprintf("hypervisor %q, not %q", s.Hypervisor, Name))
	case s.ID == "" || !filepath.IsAbs(s.Dir) || s.QMPSocket == "":
		return bad("no id, run directory or QMP socket")
	case s.QEMU.Pid <= 0:
		return bad("no qemu pid")
	case s.Agent.Kind == vm.ChannelSerial && s.AgentSocket == "":
		return bad("serial agent channel without a socket")
	case s.Agent.Kind == vm.ChannelVsock && s.Agent.CID < 3:
		return bad("vsock agent channel without a guest CID")
	case s.Agent.Kind != vm.ChannelSerial && s.Agent.Kind != vm.ChannelVsock:
		return bad(fmt.Sprintf("agent channel %q", s.Agent.Kind))
	case s.Virtiofsd != nil && (s.Share == "" || s.VirtiofsSocket == ""):
		return bad("virtiofsd without a share or socket")
	}
	return nil
}

// Recover finds a VM again from its State: QEMU and virtiofsd are watched
// again if they still run (same pid and start time, see package hostproc).
// A VM whose QEMU is gone comes back already Done; a virtiofsd that
// outlived its QEMU is killed. A State that does not decode or is not
// QEMU's fails with errdefs.ErrInvalidArgument.
func (h *Hypervisor) Recover(ctx context.Context, state json.RawMessage) (vm.VM, error) {
	var st State
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("qemu vm state: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", st.ID))
	v := &VM{opts: h.opts, st: st}
	v.Host = v.host()
	if err := v.Host.Recover(ctx, st.QEMU, st.Virtiofsd); err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"pid": st.QEMU.Pid, "running": v.VMM.Running()}).Info("qemu vm recovered")
	return v, nil
}
