package vm

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// Hypervisor launches VMs of one kind (QEMU, Cloud Hypervisor, StratoVirt).
type Hypervisor interface {
	// Name is the hypervisor's name in messages and state ("qemu").
	Name() string
	// Start launches the VMM (and its helpers) for cfg and returns once the
	// VMM process runs and answers its control channel; the guest may
	// still be booting (the caller dials the agent with Agent, bounded by
	// its boot timeout). On error nothing it started runs, and the caller
	// removes cfg.Dir.
	Start(ctx context.Context, cfg *Config) (VM, error)
	// Recover finds a VM again from the State a previous daemon persisted.
	// A VM whose processes are gone is returned all the same, already Done.
	Recover(ctx context.Context, state json.RawMessage) (VM, error)
}

// Config is one VM, hypervisor-neutral.
type Config struct {
	// ID is the sandbox id; it names the VM's processes (-name, argv) so
	// that they can be found on the host.
	ID string
	// Dir is the VM's run directory: sockets, pid files, console log. Unix
	// socket paths are bounded (107 bytes): keep it short.
	Dir string
	// Kernel and Initrd are the guest kernel (bzImage) and initramfs.
	Kernel, Initrd string
	// KernelArgs are appended to the hypervisor's own (console, ...).
	KernelArgs []string
	// VCPUs and MemoryMiB size the VM.
	VCPUs     int
	MemoryMiB int
	// Share is exported to the guest with virtio-fs under ShareTag.
	Share    string
	ShareTag string
	// Agent says how the host reaches the agent (see AgentChannel).
	Agent AgentChannel
	// NICs are the guest's network devices, in order (a tap each).
	NICs []NIC
	// Cgroup, when set, is the host cgroup (cgroups path, as CRI's cgroup
	// parent) every process of the VM is put in.
	Cgroup string
	// Accel is "kvm" or "tcg" (resolved by the caller's probe).
	Accel string
	// TCGBufferMiB bounds the translated-code buffer of an emulating
	// hypervisor (QEMU's -accel tcg,tb-size=), MiB; 0 is the hypervisor's
	// default (QEMU 7.2: 1 GiB, filled as the guest runs new code). Not
	// used under KVM.
	TCGBufferMiB int
	// Binary overrides the hypervisor's binary (config); Helpers the
	// helpers' ("virtiofsd" → path).
	Binary  string
	Helpers map[string]string
}

// HelperVirtiofsd is the Config.Helpers key of virtiofsd's binary (empty:
// the driver's default).
const HelperVirtiofsd = "virtiofsd"

// Channel kinds for AgentChannel.
const (
	// ChannelSerial is a virtio-serial port on a host unix socket (QEMU
	// without vhost-vsock).
	ChannelSerial = "serial"
	// ChannelVsock is AF_VSOCK to a guest CID (vhost-vsock).
	ChannelVsock = "vsock"
	// ChannelHybridVsock is Cloud Hypervisor's vsock unix socket.
	ChannelHybridVsock = "hvsock"
)

// AgentChannel is the agent's transport as configured.
type AgentChannel struct {
	// Kind is ChannelSerial, ChannelVsock or ChannelHybridVsock.
	Kind string
	// Port is the vsock port (agentapi.DefaultVsockPort when 0); for
	// serial the port name is agentapi.DefaultSerialPort.
	Port uint32
}

// NIC is one guest network device backed by a tap in the pod's netns.
type NIC struct {
	// Tap is the open tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR); the VMM
	// inherits it. The caller closes its copy once Start returned.
	Tap *os.File
	// TapName is the tap's name in the pod netns (for messages).
	TapName string
	// MAC is the guest side's address: the pod veth's MAC.
	MAC string
	MTU int
}

// VM is one running (or exited) guest.
type VM interface {
	// Agent is where the guest's agent is reached.
	Agent() agentclient.Target
	// Alive is nil while the VMM runs, else why it is gone (for
	// agentclient.Options.Alive).
	Alive() error
	// Done is closed when the VMM process has exited.
	Done() <-chan struct{}
	// ExitedAt is when Done was seen closed (zero before).
	ExitedAt() time.Time
	// Pids are the VM's host processes: the VMM first, then its helpers
	// (those still running).
	Pids() []int
	// Stop ends the VMM: asked to quit through its control channel (the
	// guest gets no chance to shut down: the caller asks the agent first),
	// killed when it does not exit within the context, or at once with
	// force. Helpers follow. It returns once everything has exited.
	// Idempotent.
	Stop(ctx context.Context, force bool) error
	// Cleanup removes what the VM left in its run directory (sockets, pid
	// files) after Stop; the console log stays until the caller removes
	// the directory.
	Cleanup() error
	// State is what Recover needs, persisted by the caller.
	State() (json.RawMessage, error)
	// ConsoleTail is the end of the guest console (n lines), for errors.
	ConsoleTail(n int) string
}

// Hotplugger is implemented by VMs that take devices after boot.
type Hotplugger interface {
	AddNIC(ctx context.Context, nic NIC) error
}

// VirtiofsTag is the share's virtio-fs tag: ShareTag, else
// agentapi.DefaultShareTag.
func (c *Config) VirtiofsTag() string {
	if c.ShareTag == "" {
		return agentapi.DefaultShareTag
	}
	return c.ShareTag
}

// VsockPort is the agent's vsock port: Agent.Port, else
// agentapi.DefaultVsockPort.
func (c *Config) VsockPort() uint32 {
	if c.Agent.Port == 0 {
		return agentapi.DefaultVsockPort
	}
	return c.Agent.Port
}

// ShareKernelArg is the guest kernel argument that tells the agent where
// its share is: virtio-fs under VirtiofsTag, or none without a share (else
// the agent waits for the default share's device).
func (c *Config) ShareKernelArg() string {
	if c.Share == "" {
		return agentapi.CmdlineShare + "=none"
	}
	return agentapi.CmdlineShare + "=virtiofs:" + c.VirtiofsTag()
}
