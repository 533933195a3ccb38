package stratovirt

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// Files of a VM in its run directory (vm.Config.Dir).
const (
	// QMPSocket is StratoVirt's QMP socket (-qmp).
	QMPSocket = "qmp.sock"
	// AgentSocket is the virtio console port's chardev socket.
	AgentSocket = "agent.sock"
	// VirtiofsSocket is virtiofsd's vhost-user socket.
	VirtiofsSocket = "virtiofs.sock"
	// PidFile is StratoVirt's -pidfile (written by the daemonized
	// process; StratoVirt refuses to start when it exists).
	PidFile = "stratovirt.pid"
	// ConsoleLog is the guest's serial console (ttyS0).
	ConsoleLog = "console.log"
	// Log is StratoVirt's own log: its stderr before it daemonizes, its -D
	// log file after.
	Log = "stratovirt.log"
	// VirtiofsdLog is virtiofsd's stdout and stderr.
	VirtiofsdLog = "virtiofsd.log"
)

// StratoVirt's limits (config_guidebook.md §1.2, §1.3, §2, §2.17).
const (
	minMemoryMiB = 128
	maxMemoryMiB = 512 << 10
	maxVCPUs     = 254
	// maxDevices is the user creatable devices of a microvm on x86_64
	maxDevices = 11
	// maxShareTag: StratoVirt refuses a tag of 36 bytes or more
	maxShareTag = 35
)

// firstExtraFD is the descriptor of the first hostproc.Spec.ExtraFiles entry.
const firstExtraFD = 3

// Args is StratoVirt's command line (without the binary) for cfg: a
// microvm, daemonized, and for a vsock agent channel the guest CID cid
// whose vhost-vsock descriptor follows the taps in ExtraFiles. Every option,
// device and property is config_guidebook.md's (the tests check it against
// the document). It is a pure function of its arguments (the golden files
// in testdata pin it); a config it cannot express fails with
// errdefs.ErrInvalidArgument.
//
// Descriptors: NIC i's tap is fd 3+i, the vhost-vsock fd is 3+len(NICs).
func Args(cfg *vm.Config, cid uint32) ([]string, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	machine := "microvm"
	if cfg.Share != "" {
		// vhost-user-fs maps guest memory into virtiofsd
		machine += ",mem-share=on"
	}
	a := []string{
		"-machine", machine,
		"-smp", strconv.Itoa(cfg.VCPUs),
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", strings.Join(KernelArgs(cfg), " "),
		"-qmp", "unix:" + filepath.Join(cfg.Dir, QMPSocket) + ",server,nowait",
		"-serial", "file,path=" + filepath.Join(cfg.Dir, ConsoleLog),
		"-D", filepath.Join(cfg.Dir, Log),
		"-daemonize",
		"-pidfile", filepath.Join(cfg.Dir, PidFile),
	}
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		a = append(a,
			"-device", "virtio-serial-device,id=vser0",
			"-chardev", "socket,id=agent,path="+filepath.Join(cfg.Dir, AgentSocket)+",server,nowait",
			// microvm's virtio-serial has one port, number 0, which only a
			// virtconsole may take (§2.4)
			"-device", "virtconsole,id=agentport,chardev=agent,nr=0")
	case vm.ChannelVsock:
		if cid < 3 {
			return nil, fmt.Errorf("vsock agent channel without a guest CID (%d): %w", cid, errdefs.ErrInvalidArgument)
		}
		a = append(a, "-device", fmt.Sprintf("vhost-vsock-device,id=vsock0,guest-cid=%d,vhostfd=%d", cid, firstExtraFD+len(cfg.NICs)))
	}
	if cfg.Share != "" {
		a = append(a,
			"-chardev", "socket,id=virtiofs,path="+filepath.Join(cfg.Dir, VirtiofsSocket),
			"-device", "vhost-user-fs-device,id=fs0,chardev=virtiofs,tag="+shareTag(cfg))
	}
	for i, n := range cfg.NICs {
		is := strconv.Itoa(i)
		a = append(a,
			"-netdev", "tap,id=net"+is+",fd="+strconv.Itoa(firstExtraFD+i),
			"-device", "virtio-net-device,id=nic"+is+",netdev=net"+is+",mac="+n.MAC)
	}
	return a, nil
}

// KernelArgs is the guest kernel command line: the serial console, panic
// and reboot as the guidebook's examples have them (StratoVirt exits when
// its microvm guest reboots, and panic=1 reboots), the agent's transport
// (the first virtio console port, or vsock) and share
// (vm.Config.AgentCmdline), then cfg.KernelArgs. StratoVirt appends the
// virtio-mmio devices (virtio_mmio.device=) itself.
func KernelArgs(cfg *vm.Config) []string {
	k := []string{"console=ttyS0", "panic=1", "reboot=k", "quiet"}
	k = append(k, cfg.AgentCmdline("console:"+agentapi.DefaultConsole)...)
	return append(k, cfg.KernelArgs...)
}

func shareTag(cfg *vm.Config) string { return cfg.VirtiofsTag() }

// validate checks what Args needs of cfg: vm.Config.Check, then
// StratoVirt's own limits. StratoVirt splits its property lists at every
// comma and "=" with no escape, so neither may be in the run directory or
// the share tag. Errors wrap errdefs.ErrInvalidArgument, except an agent
// channel StratoVirt cannot offer (errdefs.ErrNotImplemented).
func validate(cfg *vm.Config) error {
	if err := cfg.Check(Name, VirtiofsSocket, shareTag(cfg)); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("stratovirt vm %s: %s: %w", cfg.ID, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
	}
	devices := len(cfg.NICs)
	if cfg.Share != "" {
		devices++
	}
	switch cfg.Agent.Kind {
	case vm.ChannelSerial, vm.ChannelVsock:
		devices++
	case vm.ChannelHybridVsock:
		return fmt.Errorf("stratovirt vm %s: agent channel %q is Cloud Hypervisor's; StratoVirt offers %q (a virtio console port) or %q: %w",
			cfg.ID, cfg.Agent.Kind, vm.ChannelSerial, vm.ChannelVsock, errdefs.ErrNotImplemented)
	default:
		return bad("agent channel %q: want %q or %q", cfg.Agent.Kind, vm.ChannelSerial, vm.ChannelVsock)
	}
	switch {
	case strings.ContainsAny(cfg.Dir, ",="):
		return bad("run directory %q: StratoVirt's option lists cannot hold a comma or '='", cfg.Dir)
	case strings.ContainsAny(shareTag(cfg), "=") || len(shareTag(cfg)) > maxShareTag:
		return bad("share tag %q: at most %d bytes, no comma or '='", shareTag(cfg), maxShareTag)
	case cfg.MemoryMiB < minMemoryMiB || cfg.MemoryMiB > maxMemoryMiB:
		return bad("%d MiB of memory: StratoVirt takes %d MiB to %d GiB", cfg.MemoryMiB, minMemoryMiB, maxMemoryMiB>>10)
	case cfg.VCPUs > maxVCPUs:
		return bad("%d vCPUs: StratoVirt takes at most %d", cfg.VCPUs, maxVCPUs)
	case devices > maxDevices:
		return bad("%d devices (%d NICs): a StratoVirt microvm takes at most %d", devices, len(cfg.NICs), maxDevices)
	}
	return nil
}
