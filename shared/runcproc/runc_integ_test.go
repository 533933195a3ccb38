//go:build integration

package runcproc

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// realRunc is a runc (MAGNETAR_RUNC, else PATH) with its state in a
// temporary dir, and a bundle whose rootfs holds a static busybox.
func realRunc(t *testing.T) (r *runc.Runc, bundle string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := os.Getenv("MAGNETAR_RUNC")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("runc"); err != nil {
			t.Skip("runc not found: set MAGNETAR_RUNC")
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (static) not installed")
	}
	dir := t.TempDir()
	bundle = filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var sp specs.Spec
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(raw, &sp); err != nil {
		t.Fatal(err)
	}
	sp.Process.Terminal = false
	sp.Process.Args = []string{"/bin/busybox", "sleep", "60"}
	sp.Linux.CgroupsPath = ""
	raw, _ = json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return &runc.Runc{Command: bin, Root: filepath.Join(dir, "root"), Log: filepath.Join(dir, "runc.log"), LogFormat: runc.JSON}, bundle
}

// With the real runc: a container and an exec without stdio (`ctr run
// --null-io`) are created and started at once, not when they exit.
func TestRealRuncWithoutStdio(t *testing.T) {
	ctx := context.Background()
	r, bundle := realRunc(t)
	p := New("magnetar-nullio", bundle, r, Pidfd{})
	t.Cleanup(func() { p.Release(context.Background()) })
	returnsWithin(t, "Create", 5*time.Second, func() error { return p.Create(ctx, stdio.Config{}, false) })
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	proc, err := p.Exec(ctx, "e1", &specs.Process{Args: []string{"/bin/busybox", "sleep", "60"}, Cwd: "/"}, stdio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	returnsWithin(t, "exec Start", 5*time.Second, func() error { return proc.Start(ctx) })
	if err := syscall.Kill(int(proc.Pid()), 0); err != nil {
		t.Fatalf("exec %d: %v", proc.Pid(), err)
	}
	if err := p.Kill(ctx, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	waitExited(t, proc.Exited())
	waitExited(t, p.Exited())
	_ = proc.Delete(ctx)
}
