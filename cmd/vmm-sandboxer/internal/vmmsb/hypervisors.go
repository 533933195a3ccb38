package vmmsb

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/clh"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/qemu"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/config"
)

// Hypervisor names: the values of [hypervisors] and of a pod's persisted
// state.
const (
	HypervisorQEMU = qemu.Name
	HypervisorCLH  = clh.Name
)

// kind is one hypervisor this binary has a driver for.
type kind struct {
	// section is its configuration section ("qemu").
	section string
	// conf is that section in c.
	conf func(c *Config) *VMMConf
	// new makes its driver.
	new func() vm.Hypervisor
	// accel resolves vm.accel for it (once, at start).
	accel func(want string) (string, error)
	// channel resolves vm.agent for it (once, at start).
	channel func(want string) (string, error)
}

// kinds are the hypervisors of this binary, by name.
var kinds = map[string]kind{
	HypervisorQEMU: {
		section: "qemu",
		conf:    func(c *Config) *VMMConf { return &c.QEMU },
		new:     func() vm.Hypervisor { return qemu.New(qemu.Options{}) },
		accel:   qemu.Probe,
		channel: func(want string) (string, error) { return agentChannel(want, qemu.VhostVsockDevice) },
	},
	HypervisorCLH: {
		section: "cloud_hypervisor",
		conf:    func(c *Config) *VMMConf { return &c.CloudHypervisor },
		new:     func() vm.Hypervisor { return clh.New(clh.Options{}) },
		accel:   clh.Accel,
		channel: clh.AgentChannel,
	},
}

// kindNames lists the hypervisors of this binary, sorted.
func kindNames() string {
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// backend is one hypervisor the daemon runs pods on, resolved at start.
type backend struct {
	name    string
	kind    kind
	hv      vm.Hypervisor
	accel   string
	channel string

	// want is its configuration section as written.
	want VMMConf

	mu sync.Mutex
	// conf is want with the binaries resolved, once they are found.
	conf VMMConf
	// err is why it cannot run pods now (a binary not installed); checked
	// again at each pod's Create, so that installing the hypervisor needs
	// no daemon restart.
	err error
}

// newBackend resolves hypervisor name for the daemon: accelerator and agent
// channel (a host that cannot do what vm.accel or vm.agent forces stops the
// daemon), then its binaries (a missing one only makes its pods fail).
func newBackend(ctx context.Context, cfg *Config, name string, k kind) (*backend, error) {
	accel, err := k.accel(cfg.VM.Accel)
	if err != nil {
		return nil, fmt.Errorf("vm.accel = %q for %s: %w", cfg.VM.Accel, name, err)
	}
	channel, err := k.channel(cfg.VM.Agent)
	if err != nil {
		return nil, err
	}
	b := &backend{name: name, kind: k, hv: k.new(), accel: accel, channel: channel, want: *k.conf(cfg)}
	lg := log.G(ctx).WithFields(log.Fields{"hypervisor": name, "accel": accel, "agent_channel": channel})
	if err := b.check(); err != nil {
		lg.WithError(err).Warn("hypervisor not available: its pods fail until it is installed")
	} else {
		lg.WithField("binary", b.conf.Binary).Info("hypervisor ready")
	}
	return b, nil
}

// check resolves the backend's binaries (again), recording why it cannot
// run pods.
func (b *backend) check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	bin, err := config.Executable(b.kind.section+".binary", b.want.Binary)
	if err != nil {
		errs = append(errs, err)
	}
	fsd, err := config.Executable(b.kind.section+".virtiofsd", b.want.Virtiofsd)
	if err != nil {
		errs = append(errs, err)
	}
	if b.err = config.Join(errs...); b.err == nil {
		b.conf = VMMConf{Binary: bin, Virtiofsd: fsd}
	}
	return b.err
}

// ready returns the backend's binaries, or FailedPrecondition naming what
// is missing and its key.
func (b *backend) ready() (VMMConf, error) {
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err != nil {
		if err = b.check(); err != nil {
			return VMMConf{}, fmt.Errorf("hypervisor %s is not installed on this node: %v: %w", b.name, err, errdefs.ErrFailedPrecondition)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conf, nil
}

// agentChannel resolves vm.agent for a hypervisor with vhost-vsock at
// device: vsock where the device opens, else virtio-serial.
func agentChannel(want, device string) (string, error) {
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	switch want {
	case "serial":
		return vm.ChannelSerial, nil
	case "vsock":
		if err != nil {
			return "", fmt.Errorf("vm.agent = \"vsock\": %s cannot be opened (%v): load vhost_vsock, or set vm.agent = \"auto\" or \"serial\"", device, err)
		}
		return vm.ChannelVsock, nil
	}
	if err == nil {
		return vm.ChannelVsock, nil
	}
	return vm.ChannelSerial, nil
}
