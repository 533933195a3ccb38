package vmhost

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vhostvsock"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// State is the part of a VM's persisted state that every driver has; a
// driver's State embeds it (its fields are flattened into the driver's
// JSON) and adds its own: the VMM process, the control socket, ...
type State struct {
	// Hypervisor is the driver's name; its Recover refuses another.
	Hypervisor string `json:"hypervisor"`
	// ID and Dir are the sandbox id and the run directory.
	ID  string `json:"id"`
	Dir string `json:"dir"`
	// Virtiofsd identifies virtiofsd (nil without a share).
	Virtiofsd *hostproc.ID `json:"virtiofsd,omitempty"`
	// AgentSocket (serial channel: its chardev socket; hybrid vsock: the
	// VMM's vsock socket) and VirtiofsSocket (with a share) are unix
	// sockets in Dir.
	AgentSocket    string `json:"agent_socket,omitempty"`
	VirtiofsSocket string `json:"virtiofs_socket,omitempty"`
	// Share is the exported directory; ShareMounted says the start
	// bind-mounted it onto itself (Cleanup undoes it).
	Share        string `json:"share,omitempty"`
	ShareMounted bool   `json:"share_mounted,omitempty"`
	// Agent is the agent channel as configured and allocated.
	Agent AgentState `json:"agent"`
}

// AgentState is the agent channel of a VM.
type AgentState struct {
	// Kind is vm.ChannelSerial, vm.ChannelVsock or vm.ChannelHybridVsock.
	Kind string `json:"kind"`
	// CID and Port are the vsock address (CID: vsock only).
	CID  uint32 `json:"cid,omitempty"`
	Port uint32 `json:"port,omitempty"`
}

// NewState is the State of a VM of hypervisor name about to start for
// cfg, its agent and virtiofs sockets at those names in cfg.Dir.
func NewState(name string, cfg *vm.Config, agentSocket, virtiofsSocket string) State {
	st := State{Hypervisor: name, ID: cfg.ID, Dir: cfg.Dir, Agent: AgentState{Kind: cfg.Agent.Kind}}
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		st.AgentSocket = filepath.Join(cfg.Dir, agentSocket)
	case vm.ChannelVsock:
		st.Agent.Port = cfg.VsockPort()
	case vm.ChannelHybridVsock:
		st.AgentSocket, st.Agent.Port = filepath.Join(cfg.Dir, agentSocket), cfg.VsockPort()
	}
	if cfg.Share != "" {
		st.Share, st.VirtiofsSocket = cfg.Share, filepath.Join(cfg.Dir, virtiofsSocket)
	}
	return st
}

// Validate checks a decoded State of hypervisor name whose VMM has pid
// vmmPid and whose agent channel is one of channels; errors wrap
// errdefs.ErrInvalidArgument.
func (s *State) Validate(name string, vmmPid int, channels ...string) error {
	bad := func(why string) error {
		return fmt.Errorf("%s vm state (id %q): %s: %w", name, s.ID, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case s.Hypervisor != name:
		return bad(fmt.Sprintf("hypervisor %q, not %q", s.Hypervisor, name))
	case s.ID == "" || !filepath.IsAbs(s.Dir):
		return bad("no id or run directory")
	case vmmPid <= 0:
		return bad("no " + name + " pid")
	case s.Agent.Kind == vm.ChannelSerial && s.AgentSocket == "":
		return bad("serial agent channel without a socket")
	case s.Agent.Kind == vm.ChannelVsock && s.Agent.CID < 3:
		return bad("vsock agent channel without a guest CID")
	case s.Agent.Kind == vm.ChannelHybridVsock && (s.AgentSocket == "" || s.Agent.Port == 0):
		return bad("hybrid vsock agent channel without a socket or port")
	case !slices.Contains(channels, s.Agent.Kind):
		return bad(fmt.Sprintf("agent channel %q, not one of %q", s.Agent.Kind, channels))
	case s.Virtiofsd != nil && (s.Share == "" || s.VirtiofsSocket == ""):
		return bad("virtiofsd without a share or socket")
	}
	return nil
}

// AgentTarget is where the agent is reached: the serial chardev socket,
// the guest's CID and port, or the hybrid vsock socket and port.
func (s *State) AgentTarget() agentclient.Target {
	switch s.Agent.Kind {
	case vm.ChannelVsock:
		return agentclient.Target{VsockCID: s.Agent.CID, Port: s.Agent.Port}
	case vm.ChannelHybridVsock:
		return agentclient.Target{HybridVsock: s.AgentSocket, Port: s.Agent.Port}
	}
	return agentclient.Target{Serial: s.AgentSocket}
}

// Defaults of Options.
const (
	// DefaultStartTimeout bounds a start whose context has no deadline.
	DefaultStartTimeout = 30 * time.Second
	// DefaultStopTimeout bounds a graceful Stop whose context has no
	// deadline (Kuasar waits 10 s after quit, too).
	DefaultStopTimeout = 10 * time.Second
	// DefaultHelperGrace is how long Stop lets virtiofsd end by itself
	// once the VMM has exited (it does when its vhost-user peer goes).
	DefaultHelperGrace = 2 * time.Second
)

// Options tune a driver; zero values are the defaults.
type Options struct {
	// StartTimeout bounds a start whose context has no deadline.
	StartTimeout time.Duration
	// StopTimeout bounds a graceful Stop whose context has no deadline.
	StopTimeout time.Duration
	// HelperGrace is how long virtiofsd may take to exit after the VMM.
	HelperGrace time.Duration
	// VsockDevice is the host's vhost-vsock device (vhostvsock.Device;
	// tests replace it).
	VsockDevice string
}

// WithDefaults is o with the defaults for its zero values.
func (o Options) WithDefaults() Options {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	d := Options{StartTimeout: or(o.StartTimeout, DefaultStartTimeout), StopTimeout: or(o.StopTimeout, DefaultStopTimeout),
		HelperGrace: or(o.HelperGrace, DefaultHelperGrace), VsockDevice: o.VsockDevice}
	if d.VsockDevice == "" {
		d.VsockDevice = vhostvsock.Device
	}
	return d
}
