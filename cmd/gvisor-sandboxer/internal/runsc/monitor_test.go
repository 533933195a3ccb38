package runsc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/gvisortest"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

func TestMain(m *testing.M) {
	rc := m.Run()
	gvisortest.Cleanup()
	os.Exit(rc)
}

// sandbox is a runsc sandbox for the tests: a pause root container "sb"
// and application containers, each from its own image.
type sandbox struct {
	t       *testing.T
	h       gvisortest.Host
	dir     string
	cli     *CLI
	log     string
	monitor Monitor
}

func newSandbox(t *testing.T, h gvisortest.Host, kind string) *sandbox {
	t.Helper()
	dir := t.TempDir()
	s := &sandbox{t: t, h: h, dir: dir, log: filepath.Join(dir, "runsc.log"),
		cli: &CLI{Binary: h.Runsc, Root: filepath.Join(dir, "root"), Flags: []string{"--network=none", "--ignore-cgroups"}}}
	switch kind {
	case "control":
		s.monitor = Control{Socket: SocketPath(s.cli.Root, "sb")}
	case "processes":
		s.monitor = Processes{CLI: s.cli, Log: filepath.Join(dir, "monitor.log")}
	}
	pause := filepath.Join(dir, "pause")
	if err := os.Mkdir(pause, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, h.Pause, filepath.Join(pause, "pause"))
	bundle := filepath.Join(dir, "sb")
	sp := &specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: []string{"/pause", podinit.Arg, "sb"}, Cwd: "/", User: specs.User{UID: 65535, GID: 65535}, Capabilities: &specs.LinuxCapabilities{}},
		Root:        &specs.Root{Path: pause, Readonly: true},
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Annotations: map[string]string{"io.kubernetes.cri.container-type": "sandbox"},
		Linux:       &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
	writeSpec(t, bundle, sp)
	ctx := context.Background()
	t.Cleanup(func() {
		_ = s.cli.DeleteForce(ctx, s.log, "sb")
		for _, p := range proc.Find(func(args []string) bool { return slices.Contains(args, "--root="+s.cli.Root) }) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		for syscall.Unmount(NullNetNS(s.cli.Root), syscall.MNT_DETACH) == nil {
		}
	})
	if err := s.cli.Create(ctx, s.log, "sb", bundle, filepath.Join(bundle, "pid")); err != nil {
		t.Fatal(err)
	}
	if err := s.cli.Start(ctx, s.log, "sb", nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeSpec(t *testing.T, bundle string, sp *specs.Spec) {
	t.Helper()
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
}

// run creates and starts container id running sh -c script.
func (s *sandbox) run(id, script string) {
	s.t.Helper()
	image := filepath.Join(s.dir, id+".image")
	gvisortest.WriteImage(s.t, image, s.h.Busybox)
	sp := gvisortest.ContainerSpec("sb", "")
	sp.Root.Path = image
	sp.Process.Args = []string{"/bin/sh", "-c", script}
	// as CRI names it (runsc accounts CPU time by this name where its
	// cgroupfs can)
	sp.Annotations["io.kubernetes.cri.container-name"] = "name-" + id
	bundle := filepath.Join(s.dir, id)
	writeSpec(s.t, bundle, sp)
	ctx := context.Background()
	if err := s.cli.Runc(s.log).Create(ctx, id, bundle, nil); err != nil {
		s.t.Fatalf("create %s: %v", id, err)
	}
	if err := s.cli.Start(ctx, s.log, id, nil); err != nil {
		s.t.Fatalf("start %s: %v", id, err)
	}
}

// waitFor runs Wait in the background.
func (s *sandbox) waitFor(id string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		code, err := s.monitor.Wait(context.Background(), id)
		if err == nil && code >= 0 {
			err = &exited{code}
		}
		ch <- err
	}()
	return ch
}

type exited struct{ code int }

func (e *exited) Error() string { return "exited" }

func wantCode(t *testing.T, what string, ch <-chan error, code int) {
	t.Helper()
	select {
	case err := <-ch:
		var x *exited
		if !errors.As(err, &x) || x.code != code {
			t.Errorf("%s: %v, want exit %d", what, err, code)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no exit", what)
	}
}

// Both monitors learn the same exits and statistics from a real sandbox.
func TestMonitors(t *testing.T) {
	h := gvisortest.Need(t)
	for _, kind := range []string{"control", "processes"} {
		t.Run(kind, func(t *testing.T) { testMonitor(t, newSandbox(t, h, kind)) })
	}
}

func testMonitor(t *testing.T, s *sandbox) {
	ctx := context.Background()
	s.run("a", "sleep 0.3; exit 7")
	wantCode(t, "a wait started before the exit", s.waitFor("a"), 7)

	s.run("b", "exit 3")
	time.Sleep(500 * time.Millisecond)
	wantCode(t, "a wait started after the exit", s.waitFor("b"), 3)
	wantCode(t, "a second wait", s.waitFor("b"), 3)

	// some CPU time first: the kubelet's pod and container stats need it
	s.run("c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600")
	var st *Stats
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st, err = s.monitor.Stats(ctx, "c", "name-c"); err == nil && st.CPU.Usage.Total > 0 {
			break
		}
	}
	if err != nil || st.Pids.Current < 1 || st.Memory.Usage.Usage == 0 || st.CPU.Usage.Total == 0 {
		t.Errorf("stats of a running container: %+v, %v", st, err)
	}
	c := s.waitFor("c")
	if err := s.cli.Runc(s.log).Kill(ctx, "c", int(syscall.SIGKILL), nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a killed container", c, 128+int(syscall.SIGKILL))

	if _, err := s.monitor.Wait(ctx, "nope"); err == nil || errdefs.IsUnavailable(err) {
		t.Errorf("wait of an unknown container: %v", err)
	}
	if _, err := s.monitor.Stats(ctx, "nope", ""); err == nil {
		t.Error("stats of an unknown container")
	}

	// a wait ended by its context
	s.run("d", "exec sleep 3600")
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := s.monitor.Wait(wctx, "d"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait with a context that ends: %v", err)
	}
	cancel()

	// the sandbox dies: a pending wait fails, and so do later ones
	d := s.waitFor("d")
	time.Sleep(200 * time.Millisecond)
	sb := proc.Find(func(args []string) bool {
		return args[0] == "runsc-sandbox" && slices.Contains(args, "--root="+s.cli.Root)
	})
	if len(sb) != 1 {
		t.Fatalf("sandbox processes: %v", sb)
	}
	_ = syscall.Kill(sb[0].PID, syscall.SIGKILL)
	select {
	case err := <-d:
		var x *exited
		if errors.As(err, &x) {
			// runsc wait may report the sandbox's own status
			t.Logf("wait when the sandbox dies: exit %d", x.code)
		} else if err == nil {
			t.Error("wait when the sandbox dies: no error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("wait did not end when the sandbox died")
	}
	if _, ok := s.monitor.(Control); ok {
		if _, err := s.monitor.Wait(ctx, "d"); !errdefs.IsUnavailable(err) {
			t.Errorf("wait on a dead sandbox: %v, want unavailable", err)
		}
	}
}

// A control socket path longer than a unix address is reached through
// /proc/self/fd, as runsc binds it.
func TestControlLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := Control{Socket: SocketPath(dir, "sb")}
	_, err := c.Wait(context.Background(), "x")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("no socket: %v", err)
	}
}
