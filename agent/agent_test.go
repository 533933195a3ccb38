package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// findRuncForTest is the real runc from `make tools`, else runc in PATH.
func findRuncForTest(t *testing.T) string {
	root, _ := filepath.Abs("..")
	for _, p := range []string{filepath.Join(root, "_output/prefix/bin/runc")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	t.Skip("no runc (make tools builds one into _output/prefix/bin)")
	return ""
}

// TestAgentBinaryDevModeRunsAContainer builds the agent, runs it in -dev
// mode on a unix socket (what a QEMU chardev looks like to the host) with
// the real runc, and drives it with agentclient: a busybox container's
// stdin and stdout through the Streams service, its exit code, an exec, the
// events, a reconnect. Root only (runc needs it).
func TestAgentBinaryDevModeRunsAContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc)")
	}
	runcBin := findRuncForTest(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox (apt-get install busybox-static) for the container rootfs")
	}
	if out, err := exec.Command("file", bb).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Skipf("%s is not static", bb)
	}
	dir, err := os.MkdirTemp("", "agent-dev")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "magnetar-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	share, ioRoot, sock := filepath.Join(dir, "share"), filepath.Join(dir, "io"), filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "-dev", "-listen", sock, "-share", share, "-io", ioRoot, "-state", filepath.Join(dir, "state"), "-runc", runcBin, "-log-level", "debug")
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Logf("agent log:\n%s", b)
		}
		_ = os.Remove("/sys/fs/cgroup/magnetar") // our cgroup parent, if empty
	}()
	alive := func() error {
		select {
		case err := <-exited:
			exited <- err
			return err
		default:
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := agentclient.Dial(ctx, agentclient.Target{Serial: sock}, agentclient.Options{Alive: alive})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// a bundle on the "share": busybox rootfs, runc's default spec
	id := "ctr1"
	bundle := filepath.Join(share, id)
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(bb)
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(runcBin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var sp specs.Spec
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	sp.Process.Terminal = false
	sp.Process.Args = []string{"/bin/sh", "-c", "echo hello; read x; echo got $x; exit 3"}
	sp.Root.Readonly = false
	// what CRI would send: the pod's netns on the host, dropped in the guest
	sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-x"})
	b, _ = json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	path := func(exec, stream string) string {
		return filepath.Join(ioRoot, strings.TrimPrefix(agentapi.StdioPath(id, exec, stream), agentapi.IORoot))
	}
	task := c.Task()
	start := time.Now()
	if _, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: bundle,
		Stdin: path("", agentapi.Stdin), Stdout: path("", agentapi.Stdout)}); err != nil {
		t.Fatalf("create: %v", err)
	}
	out, err := c.Stdout(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("create+start through the agent with runc: %s", time.Since(start).Round(time.Millisecond))
	rd := bufio.NewReader(out)
	if l, err := rd.ReadString('\n'); err != nil || l != "hello\n" {
		t.Fatalf("first line %q %v", l, err)
	}
	in, err := c.Stdin(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("world\n")); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil || string(rest) != "got world\n" {
		t.Fatalf("rest of stdout %q %v", rest, err)
	}
	w, err := task.Wait(ctx, &taskapi.WaitRequest{ID: id})
	if err != nil || w.GetExitStatus() != 3 {
		t.Fatalf("wait: %v %v", w, err)
	}

	// the host reconnects: the agent serves again and still knows the task
	c.Close()
	c, err = agentclient.Dial(ctx, agentclient.Target{Serial: sock}, agentclient.Options{Alive: alive})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Task().State(ctx, &taskapi.StateRequest{ID: id})
	if err != nil || st.GetExitStatus() != 3 {
		t.Fatalf("state after reconnect: %v %v", st, err)
	}
	var topics []string
	r, err := c.Sandbox().GetEvents(ctx, &agentapi.GetEventsRequest{TimeoutMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range r.GetEvents() {
		topics = append(topics, ev.GetTopic())
	}
	if strings.Join(topics, " ") != "/tasks/create /tasks/start /tasks/exit" {
		t.Fatalf("events %v", topics)
	}
	if _, err := c.Task().Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ioRoot, id)); !os.IsNotExist(err) {
		t.Fatalf("stdio FIFOs left: %v", err)
	}

	// a terminal: the console copied to the stdout stream, stdin to the console
	tid := "tty1"
	tb := filepath.Join(share, tid)
	if err := os.Rename(bundle, tb); err != nil {
		t.Fatal(err)
	}
	sp.Process.Terminal = true
	sp.Process.Args = []string{"/bin/sh", "-c", "tty; read x; echo got $x"}
	b, _ = json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(tb, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	tpath := func(stream string) string {
		return filepath.Join(ioRoot, strings.TrimPrefix(agentapi.StdioPath(tid, "", stream), agentapi.IORoot))
	}
	if _, err := c.Task().Create(ctx, &taskapi.CreateTaskRequest{ID: tid, Bundle: tb, Terminal: true,
		Stdin: tpath(agentapi.Stdin), Stdout: tpath(agentapi.Stdout)}); err != nil {
		t.Fatalf("create tty: %v", err)
	}
	tout, err := c.Stdout(ctx, tid, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Task().Start(ctx, &taskapi.StartRequest{ID: tid}); err != nil {
		t.Fatalf("start tty: %v", err)
	}
	tin, err := c.Stdin(ctx, tid, "")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tin.Write([]byte("tty-in\n"))
	got, err := io.ReadAll(tout)
	if err != nil || !strings.Contains(string(got), "/dev/pts/") || !strings.Contains(string(got), "got tty-in") {
		t.Fatalf("tty output %q %v", got, err)
	}
	_ = tin.Close()
	if w, err := c.Task().Wait(ctx, &taskapi.WaitRequest{ID: tid}); err != nil || w.GetExitStatus() != 0 {
		t.Fatalf("tty wait %v %v", w, err)
	}
	if _, err := c.Task().Delete(ctx, &taskapi.DeleteRequest{ID: tid}); err != nil {
		t.Fatalf("delete tty: %v", err)
	}
}
