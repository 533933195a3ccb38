package vmmsb

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"

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
			d, err := newDriver(env, cfg, kinds, podNetwork{})
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

// newDriver resolves every hypervisor the configuration uses (of ks, the
// binary's kinds but in tests) once, at start.
func newDriver(env *daemon.Env, cfg *Config, ks map[string]kind, net network) (*driver, error) {
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("run_dir: %w", err)
	}
	d := &driver{env: env, cfg: cfg, net: net, backends: map[string]*backend{}}
	for _, name := range cfg.UsedHypervisors() {
		k, ok := ks[name]
		if !ok {
			return nil, fmt.Errorf("hypervisor %q: unknown (this binary has: %s)", name, kindNames())
		}
		b, err := newBackend(env.Life, cfg, name, k)
		if err != nil {
			return nil, err
		}
		d.backends[name] = b
	}
	log.G(env.Life).WithFields(log.Fields{"hypervisors": cfg.Hypervisors, "default_hypervisor": cfg.VM.DefaultHypervisor,
		"kernel": cfg.VM.Kernel, "initrd": cfg.VM.Initrd}).Info("VM settings")
	return d, nil
}
