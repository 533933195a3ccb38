package quarksb

import (
	"fmt"
	"os"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// Sandboxer describes the quark sandboxer to the daemon: its containers
// run in their pod's Quark sandbox (taskfwd).
func Sandboxer() daemon.Sandboxer {
	return taskfwd.Sandboxer(Name, func() daemon.Config { return DefaultConfig() },
		func(env *daemon.Env, c daemon.Config) (sandbox.Driver, error) { return newDriver(env, c.(*Config)) })
}

// newDriver makes the driver; the configuration's host check (CheckHost)
// has resolved Quark's binary.
func newDriver(env *daemon.Env, cfg *Config) (*driver, error) {
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("run_dir: %w", err)
	}
	log.G(env.Life).WithFields(log.Fields{"quark": cfg.Quark.Binary, "quark_config": cfg.Quark.ConfigFile, "run_dir": cfg.RunDir}).Info("Quark settings")
	return &driver{env: env, cfg: cfg}, nil
}
