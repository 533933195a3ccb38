package taskfwd

import (
	"context"
	"errors"
	"testing"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

func TestSandboxer(t *testing.T) {
	boom := errors.New("boom")
	sb := Sandboxer("x", func() daemon.Config { return nil },
		func(env *daemon.Env, cfg daemon.Config) (sandbox.Driver, error) { return nil, boom })
	if sb.Name != "x" || sb.NewConfig == nil {
		t.Errorf("sandboxer %+v", sb)
	}
	if d, b, err := sb.Build(&daemon.Env{Life: context.Background()}, nil); d != nil || b != nil || !errors.Is(err, boom) {
		t.Errorf("Build with a failing driver = %v, %v, %v; want nothing and its error", d, b, err)
	}
	// a bundle with no note of ours: nothing to release, the task is lost
	x, err := sb.ShimDelete(context.Background(), "c1", t.TempDir())
	if err != nil || x.Status != sandbox.ExitCodeLost || x.At.IsZero() {
		t.Errorf("ShimDelete = %+v, %v; want exit %d", x, err, sandbox.ExitCodeLost)
	}
}
