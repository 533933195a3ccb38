package quarksb

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

// Sandboxer describes the quark sandboxer to the daemon.
func Sandboxer() daemon.Sandboxer {
	return daemon.Sandboxer{
		Name:      Name,
		NewConfig: func() daemon.Config { return DefaultConfig() },
		Build: func(env *daemon.Env, c daemon.Config) (sandbox.Driver, task.Backend, error) {
			d, err := newDriver(env, c.(*Config))
			if err != nil {
				return nil, nil, err
			}
			return d, taskfwd.New(taskfwd.Config{Life: env.Life, FDs: env.FDs}), nil
		},
		ShimDelete: func(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
			// the container ran in its pod's Quark sandbox, gone with the
			// connection as far as containerd knows: release its host mounts
			return &daemon.ShimExit{Status: sandbox.ExitCodeLost, At: time.Now()}, taskfwd.CleanupBundle(bundleDir, id)
		},
	}
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
