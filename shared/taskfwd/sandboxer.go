package taskfwd

import (
	"context"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Sandboxer is the daemon.Sandboxer name of a driver whose pods are
// guests (Guest) that its containers run in: Build makes the driver
// (newDriver, with the configuration newConfig made and the daemon
// loaded) and this package's Backend for its tasks; ShimDelete releases
// the host mounts of a lost container's bundle (CleanupBundle) and reports
// it lost (sandbox.ExitCodeLost), since it ran in a guest gone with the
// connection as far as containerd knows.
func Sandboxer(name string, newConfig func() daemon.Config, newDriver func(env *daemon.Env, cfg daemon.Config) (sandbox.Driver, error)) daemon.Sandboxer {
	return daemon.Sandboxer{
		Name:      name,
		NewConfig: newConfig,
		Build: func(env *daemon.Env, cfg daemon.Config) (sandbox.Driver, task.Backend, error) {
			d, err := newDriver(env, cfg)
			if err != nil {
				return nil, nil, err
			}
			return d, New(Config{Life: env.Life, FDs: env.FDs}), nil
		},
		ShimDelete: func(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
			return &daemon.ShimExit{Status: sandbox.ExitCodeLost, At: time.Now()}, CleanupBundle(bundleDir, id)
		},
	}
}
