package clh

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// Files of a VM in its run directory (vm.Config.Dir).
const (
	// APISocket is the REST API's socket (--api-socket path=).
	APISocket = "api.sock"
	// VsockSocket is the hybrid vsock socket (VmConfig.vsock.socket): the
	// host writes "CONNECT <port>\n" on a connection to reach a guest
	// listener.
	VsockSocket = "vsock.sock"
	// VirtiofsSocket is virtiofsd's vhost-user socket.
	VirtiofsSocket = vmhost.VirtiofsSocket
	// ConsoleLog is the guest's serial console (VmConfig.serial, File).
	ConsoleLog = vmhost.ConsoleLog
	// CLHLog is Cloud Hypervisor's own stdout and stderr.
	CLHLog = "cloud-hypervisor.log"
	// VirtiofsdLog is virtiofsd's stdout and stderr.
	VirtiofsdLog = vmhost.VirtiofsdLog
)

// Device settings of every VM.
const (
	// GuestCID is the guest's vsock CID. With hybrid vsock the host never
	// addresses a CID (it connects to the VM's own socket), so every VM
	// has the first guest CID, as Kuasar's do.
	GuestCID = 3
	// FsNumQueues and FsQueueSize are virtio-fs's request queues (the
	// document's defaults, which it nevertheless requires).
	FsNumQueues = 1
	FsQueueSize = 1024
	// NetNumQueues is a NIC's queues: one RX/TX pair per tap descriptor.
	NetNumQueues = 2
	// EntropySource is the virtio-rng device's source.
	EntropySource = "/dev/urandom"
)

// maxSocketPath is the room for a path in a sockaddr_un.
const maxSocketPath = 107

// maxShareTag is virtio-fs's tag length (struct virtio_fs_config).
const maxShareTag = 36

// Args is Cloud Hypervisor's command line (without the binary) for cfg:
// only the REST API's socket. The VM itself is defined over the API
// (VMConfig with vm.create, NetConfig with vm.add-net, then vm.boot), whose
// bodies the OpenAPI document specifies field by field.
func Args(cfg *vm.Config) []string {
	return []string{"--api-socket", "path=" + filepath.Join(cfg.Dir, APISocket)}
}

// VMConfig is the body of vm.create for cfg: the kernel, initramfs and
// command line (KernelArgs), vCPUs, shared memory (virtio-fs maps it into
// virtiofsd), the share (virtio-fs on VirtiofsSocket), the hybrid vsock
// device on VsockSocket, the serial console into ConsoleLog (virtio-console
// off), and a virtio-rng device. NICs are not in it: their taps go with
// vm.add-net (NetConfig). A config it cannot express fails with
// errdefs.ErrInvalidArgument.
func VMConfig(cfg *vm.Config) (*clhapi.VmConfig, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	shared := true
	c := &clhapi.VmConfig{
		Payload: clhapi.PayloadConfig{
			Kernel: ptr(cfg.Kernel), Initramfs: ptr(cfg.Initrd),
			Cmdline: ptr(strings.Join(KernelArgs(cfg), " ")),
		},
		Cpus:    &clhapi.CpusConfig{BootVcpus: cfg.VCPUs, MaxVcpus: cfg.VCPUs},
		Memory:  &clhapi.MemoryConfig{Size: int64(cfg.MemoryMiB) << 20, Shared: &shared},
		Vsock:   &clhapi.VsockConfig{Cid: GuestCID, Socket: filepath.Join(dir, VsockSocket)},
		Serial:  &clhapi.SerialConfig{Mode: clhapi.ConsoleModeFile, File: ptr(filepath.Join(dir, ConsoleLog))},
		Console: &clhapi.ConsoleConfig{Mode: clhapi.ConsoleModeOff},
		Rng:     &clhapi.RngConfig{Src: EntropySource},
	}
	if cfg.Share != "" {
		c.Fs = &[]clhapi.FsConfig{{Tag: cfg.VirtiofsTag(), Socket: filepath.Join(dir, VirtiofsSocket),
			NumQueues: FsNumQueues, QueueSize: FsQueueSize}}
	}
	return c, nil
}

// NetConfig is the body of vm.add-net for NIC i of a VM: its id, the guest
// side's MAC (the pod veth's), the MTU, and one queue pair for the one tap
// descriptor that goes with the request. No IP and no tap name: Cloud
// Hypervisor neither creates nor configures the tap.
func NetConfig(i int, n vm.NIC) *clhapi.NetConfig {
	c := &clhapi.NetConfig{Id: ptr("net" + strconv.Itoa(i)), Mac: ptr(n.MAC), NumQueues: ptr(NetNumQueues)}
	if n.MTU > 0 {
		c.Mtu = ptr(n.MTU)
	}
	return c
}

// KernelArgs is the guest kernel command line: the serial console (8250,
// ttyS0), a panic rebooting at once (see the package doc), quiet, the
// agent's transport (vsock on the agent port: hybrid vsock on the host)
// and share (agentapi.CmdlineTransport, CmdlineShare), then cfg.KernelArgs.
func KernelArgs(cfg *vm.Config) []string {
	k := []string{"console=ttyS0", "panic=-1", "quiet",
		agentapi.CmdlineTransport + "=vsock:" + strconv.FormatUint(uint64(cfg.VsockPort()), 10)}
	k = append(k, cfg.ShareKernelArg())
	return append(k, cfg.KernelArgs...)
}

func ptr[T any](v T) *T { return &v }

// validate checks what the driver needs of cfg; every error wraps
// errdefs.ErrInvalidArgument, except an agent channel Cloud Hypervisor
// cannot offer (errdefs.ErrNotImplemented).
func validate(cfg *vm.Config) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("cloud-hypervisor vm %s: %s: %w", cfg.ID, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
	}
	switch {
	case cfg.ID == "":
		return bad("no id")
	case !filepath.IsAbs(cfg.Dir):
		return bad("run directory %q is not absolute", cfg.Dir)
	case strings.Contains(cfg.Dir, ","):
		// --api-socket path=... is a comma-separated option list
		return bad("run directory %q: no comma allowed (cloud-hypervisor's option syntax)", cfg.Dir)
	case len(filepath.Join(cfg.Dir, VirtiofsSocket)) > maxSocketPath:
		return bad("run directory %q is too long for unix sockets (%d bytes at most with %s)", cfg.Dir, maxSocketPath, VirtiofsSocket)
	case cfg.Kernel == "" || cfg.Initrd == "":
		return bad("kernel and initrd are required")
	case cfg.VCPUs <= 0 || cfg.MemoryMiB <= 0:
		return bad("%d vCPUs and %d MiB: both must be positive", cfg.VCPUs, cfg.MemoryMiB)
	case cfg.Share != "" && !filepath.IsAbs(cfg.Share):
		return bad("share %q is not absolute", cfg.Share)
	case len(cfg.VirtiofsTag()) > maxShareTag:
		return bad("share tag %q: at most %d bytes", cfg.VirtiofsTag(), maxShareTag)
	}
	switch cfg.Agent.Kind {
	case vm.ChannelHybridVsock:
	case vm.ChannelSerial, vm.ChannelVsock:
		return fmt.Errorf("cloud-hypervisor vm %s: agent channel %q: Cloud Hypervisor offers hybrid vsock (%q) only: %w",
			cfg.ID, cfg.Agent.Kind, vm.ChannelHybridVsock, errdefs.ErrNotImplemented)
	default:
		return bad("agent channel %q: want %q", cfg.Agent.Kind, vm.ChannelHybridVsock)
	}
	switch cfg.Accel {
	case "", AccelAuto, AccelKVM:
	default:
		return bad("accelerator %q: Cloud Hypervisor runs on KVM only", cfg.Accel)
	}
	for i, n := range cfg.NICs {
		if n.Tap == nil {
			return bad("nic %d (%s) has no tap", i, n.TapName)
		}
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return bad("nic %d (%s): MAC %q", i, n.TapName, n.MAC)
		}
		if n.MTU < 0 {
			return bad("nic %d (%s): MTU %d", i, n.TapName, n.MTU)
		}
	}
	return nil
}
