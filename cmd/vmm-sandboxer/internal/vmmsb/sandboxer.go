package vmmsb

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/qemu"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// Sandboxer describes the vmm sandboxer to the daemon.
func Sandboxer() daemon.Sandboxer {
	return daemon.Sandboxer{
		Name:      Name,
		NewConfig: func() daemon.Config { return DefaultConfig() },
		Build: func(env *daemon.Env, c daemon.Config) (sandbox.Driver, task.Backend, error) {
			cfg := c.(*Config)
			d, err := newDriver(env, cfg, qemu.New(qemu.Options{}), podNetwork{})
			if err != nil {
				return nil, nil, err
			}
			return d, taskfwd.New(taskfwd.Config{Life: env.Life, FDs: env.FDs}), nil
		},
		ShimDelete: func(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
			// the container ran in its pod's VM, gone with the connection
			// as far as containerd knows: release its host mounts
			return &daemon.ShimExit{Status: sandbox.ExitCodeLost, At: time.Now()}, taskfwd.CleanupBundle(bundleDir, id)
		},
	}
}

// newDriver resolves the accelerator and the agent channel once, at start:
// a host that cannot do what the configuration forces stops the daemon.
func newDriver(env *daemon.Env, cfg *Config, hv vm.Hypervisor, net network) (*driver, error) {
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("run_dir: %w", err)
	}
	accel, err := qemu.Probe(cfg.VM.Accel)
	if err != nil {
		return nil, fmt.Errorf("vm.accel = %q: %w", cfg.VM.Accel, err)
	}
	channel, err := agentChannel(cfg.VM.Agent)
	if err != nil {
		return nil, err
	}
	log.G(env.Life).WithFields(log.Fields{"hypervisor": hv.Name(), "accel": accel, "agent_channel": channel,
		"kernel": cfg.VM.Kernel, "initrd": cfg.VM.Initrd}).Info("VM settings")
	return &driver{env: env, cfg: cfg, hv: hv, net: net, accel: accel, channel: channel}, nil
}

// agentChannel resolves vm.agent: vsock where the host has vhost-vsock
// (the device opens), else virtio-serial.
func agentChannel(want string) (string, error) {
	f, err := os.OpenFile(qemu.VhostVsockDevice, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	switch want {
	case "serial":
		return vm.ChannelSerial, nil
	case "vsock":
		if err != nil {
			return "", fmt.Errorf("vm.agent = \"vsock\": %s cannot be opened (%v): load vhost_vsock, or set vm.agent = \"auto\" or \"serial\"", qemu.VhostVsockDevice, err)
		}
		return vm.ChannelVsock, nil
	}
	if err == nil {
		return vm.ChannelVsock, nil
	}
	return vm.ChannelSerial, nil
}
