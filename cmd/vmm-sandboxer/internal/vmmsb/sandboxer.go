package vmmsb

import (
	"fmt"
	"os"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// Sandboxer describes the vmm sandboxer to the daemon: its containers run
// in their pod's VM (taskfwd).
func Sandboxer() daemon.Sandboxer {
	return taskfwd.Sandboxer(Name, func() daemon.Config { return DefaultConfig() },
		func(env *daemon.Env, c daemon.Config) (sandbox.Driver, error) {
			return newDriver(env, c.(*Config), kinds, podNetwork{})
		})
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
	pl, err := newPool(d)
	if err != nil {
		return nil, err
	}
	d.pool = pl
	log.G(env.Life).WithFields(log.Fields{"hypervisors": cfg.Hypervisors, "default_hypervisor": cfg.VM.DefaultHypervisor,
		"kernel": cfg.VM.Kernel, "initrd": cfg.VM.Initrd}).Info("VM settings")
	return d, nil
}
