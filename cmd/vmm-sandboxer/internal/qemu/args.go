package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// Accelerators (vm.Config.Accel, Probe).
const (
	// AccelKVM is hardware virtualization (-accel kvm -cpu host).
	AccelKVM = "kvm"
	// AccelTCG is QEMU's translator (-accel tcg -cpu max).
	AccelTCG = "tcg"
	// AccelAuto asks Probe to choose.
	AccelAuto = "auto"
)

// Files of a VM in its run directory (vm.Config.Dir).
const (
	// QMPSocket is QEMU's monitor (QMP).
	QMPSocket = "qmp.sock"
	// AgentSocket is the virtio-serial port's chardev socket.
	AgentSocket = "agent.sock"
	// VirtiofsSocket is virtiofsd's vhost-user socket.
	VirtiofsSocket = "virtiofs.sock"
	// PidFile is QEMU's -pidfile.
	PidFile = "qemu.pid"
	// ConsoleLog is the guest's serial console (ttyS0).
	ConsoleLog = "console.log"
	// QEMULog is QEMU's own stdout and stderr.
	QEMULog = "qemu.log"
	// VirtiofsdLog is virtiofsd's stdout and stderr.
	VirtiofsdLog = "virtiofsd.log"
)

// firstExtraFD is the descriptor of the first hostproc.Spec.ExtraFiles entry.
const firstExtraFD = 3

// Args is QEMU's command line (without the binary) for cfg: a microvm with
// the accelerator accel, tsc_early_khz=tscKHz on the kernel command line
// under TCG (0: left out), and, for a vsock agent channel, the guest CID
// cid whose vhost-vsock descriptor follows the taps in ExtraFiles. It is a
// pure function of its arguments (the golden files in testdata pin it); a
// config it cannot express fails with errdefs.ErrInvalidArgument.
//
// Descriptors: NIC i's tap is fd 3+i, the vhost-vsock fd is 3+len(NICs).
func Args(cfg *vm.Config, accel string, tscKHz int, cid uint32) ([]string, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	cpu, accelOpt := "max", accel
	switch accel {
	case AccelKVM:
		cpu = "host"
	case AccelTCG:
		// every vCPU on one host thread: a 2-vCPU guest under QEMU 7.2's
		// multi-threaded TCG here locked up now and then with both vCPUs
		// spinning in the kernel ("soft lockup", the kubelet stage's
		// 2-container pod, 2 of 3 fresh-machine runs); a 1-vCPU guest runs
		// the same either way
		accelOpt += ",thread=single"
		if cfg.TCGBufferMiB > 0 {
			// QEMU's own memory under emulation is mostly this buffer
			accelOpt += ",tb-size=" + strconv.Itoa(cfg.TCGBufferMiB)
		}
	default:
		return nil, fmt.Errorf("accelerator %q: want %s or %s: %w", accel, AccelKVM, AccelTCG, errdefs.ErrInvalidArgument)
	}
	mem := strconv.Itoa(cfg.MemoryMiB)
	a := []string{
		"-name", "guest=" + escape(cfg.ID) + ",debug-threads=on",
		"-machine", "microvm,memory-backend=mem",
		"-accel", accelOpt,
		"-cpu", cpu,
		// shared guest memory: vhost-user-fs maps it into virtiofsd
		"-object", "memory-backend-memfd,id=mem,size=" + mem + "M,share=on",
		"-m", mem,
		"-smp", strconv.Itoa(cfg.VCPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		// libvhost-user refuses legacy virtio-mmio devices
		"-global", "virtio-mmio.force-legacy=false",
		"-chardev", "file,id=console,path=" + escape(filepath.Join(cfg.Dir, ConsoleLog)),
		"-serial", "chardev:console",
		"-qmp", "unix:" + escape(filepath.Join(cfg.Dir, QMPSocket)) + ",server=on,wait=off",
		"-pidfile", filepath.Join(cfg.Dir, PidFile),
	}
	switch cfg.Agent.Kind {
	case vm.ChannelSerial:
		a = append(a,
			"-device", "virtio-serial-device,id=vser0",
			"-chardev", "socket,id=agent,path="+escape(filepath.Join(cfg.Dir, AgentSocket))+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+agentapi.DefaultSerialPort)
	case vm.ChannelVsock:
		if cid < 3 {
			return nil, fmt.Errorf("vsock agent channel without a guest CID (%d): %w", cid, errdefs.ErrInvalidArgument)
		}
		a = append(a, "-device", fmt.Sprintf("vhost-vsock-device,id=vsock0,guest-cid=%d,vhostfd=%d", cid, firstExtraFD+len(cfg.NICs)))
	}
	if cfg.Share != "" {
		a = append(a,
			"-chardev", "socket,id=virtiofs,path="+escape(filepath.Join(cfg.Dir, VirtiofsSocket)),
			"-device", "vhost-user-fs-device,chardev=virtiofs,tag="+shareTag(cfg))
	}
	for i, n := range cfg.NICs {
		id := "n" + strconv.Itoa(i)
		dev := "virtio-net-device,netdev=" + id + ",mac=" + n.MAC
		if n.MTU > 0 {
			dev += ",host_mtu=" + strconv.Itoa(n.MTU)
		}
		a = append(a, "-netdev", "tap,id="+id+",fd="+strconv.Itoa(firstExtraFD+i), "-device", dev)
	}
	return append(a,
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", strings.Join(KernelArgs(cfg, accel, tscKHz), " ")), nil
}

// KernelArgs is the guest kernel command line: the serial console, panic
// and reboot turned into QEMU exiting (with -no-reboot), tsc_early_khz
// under TCG (microvm has neither HPET nor PM timer, and TSC calibration
// against the PIT fails now and then under TCG, hanging the boot:
// notes/vm-host.md §5), the agent's transport and share
// (vm.Config.AgentCmdline: the named virtio-serial port, or vsock), then
// cfg.KernelArgs.
func KernelArgs(cfg *vm.Config, accel string, tscKHz int) []string {
	k := []string{"console=ttyS0", "panic=-1", "reboot=t", "quiet"}
	if accel == AccelTCG && tscKHz > 0 {
		k = append(k, "tsc_early_khz="+strconv.Itoa(tscKHz))
	}
	k = append(k, cfg.AgentCmdline("serial:"+agentapi.DefaultSerialPort)...)
	return append(k, cfg.KernelArgs...)
}

func shareTag(cfg *vm.Config) string { return cfg.VirtiofsTag() }

// escape doubles commas, QEMU's escape inside an option list (QemuOpts).
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// validate checks what Args needs of cfg (vm.Config.Check and the agent
// channel); every error wraps errdefs.ErrInvalidArgument (except an agent
// channel QEMU cannot offer: errdefs.ErrNotImplemented).
func validate(cfg *vm.Config) error {
	if err := cfg.Check(Name, VirtiofsSocket, shareTag(cfg)); err != nil {
		return err
	}
	if cfg.TCGBufferMiB < 0 {
		return fmt.Errorf("qemu vm %s: TCG buffer %d MiB: must not be negative: %w", cfg.ID, cfg.TCGBufferMiB, errdefs.ErrInvalidArgument)
	}
	switch cfg.Agent.Kind {
	case vm.ChannelSerial, vm.ChannelVsock:
		return nil
	case vm.ChannelHybridVsock:
		return fmt.Errorf("qemu vm %s: agent channel %q is Cloud Hypervisor's; QEMU offers %q or %q: %w",
			cfg.ID, cfg.Agent.Kind, vm.ChannelSerial, vm.ChannelVsock, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("qemu vm %s: agent channel %q: want %q or %q: %w", cfg.ID, cfg.Agent.Kind, vm.ChannelSerial, vm.ChannelVsock, errdefs.ErrInvalidArgument)
}
