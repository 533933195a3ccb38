package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// guestShare is where the agent mounts the virtio-fs share.
const guestShare = agentapi.ShareRoot

// dial connects to the agent of vm, failing fast once QEMU is gone.
func dial(ctx context.Context, vm *guestvm.VM) (*agentclient.Client, error) {
	return agentclient.Dial(ctx, agentclient.Target{Serial: vm.AgentSocket()}, agentclient.Options{Alive: alive(vm)})
}

// alive is agentclient's Options.Alive for vm: nil while QEMU runs, why it
// ended once it has.
func alive(vm *guestvm.VM) func() error {
	return func() error {
		if r := vm.ExitReason(); r != "" {
			return fmt.Errorf("qemu exited (%s)", r)
		}
		return nil
	}
}

func bootAgent(t *testing.T) (*guestvm.VM, string, *agentclient.Client) {
	t.Helper()
	vm, share := startVM(t, vmOpts{})
	c, err := dial(ctxTimeout(t, bootTimeout), vm)
	if err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	t.Logf("agent ready %.2f s after QEMU start: %s (protocol %s)", time.Since(vm.Started).Seconds(),
		c.Health().GetAgentVersion(), c.Health().GetVersion())
	// the image and the agent agree: every module of /modules/load loaded
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, `msg="kernel module"`) {
			t.Errorf("agent could not load a module of the image: %s", l.Text)
		}
	}
	return vm, share, c
}

// TestContainerLifecycle is the whole path: boot, Health, Setup, a busybox
// container from a bundle on the virtio-fs share with its stdout through the
// agent's stream, an exec with its exit code, seccomp, kill, Wait, Delete and
// a clean Shutdown.
func TestContainerLifecycle(t *testing.T) {
	vm, share, c := bootAgent(t)
	ctx := ctxTimeout(t, 5*time.Minute)
	h := c.Health()
	if h.GetMajor() != agentapi.Major || h.GetVersion() == "" {
		t.Fatalf("health: %+v, host speaks %s", h, agentapi.Version)
	}
	sb := c.Sandbox()

	if _, err := sb.Setup(ctx, &agentapi.SetupRequest{
		Hostname: "vmtest-pod",
		Dns:      &agentapi.DNS{Servers: []string{"10.0.2.3"}, Searches: []string{"example.test"}},
		Sysctls:  map[string]string{"net.ipv4.ip_forward": "1"},
	}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	if _, err := sb.Setup(ctx, &agentapi.SetupRequest{Hostname: "not a hostname!"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("setup with a bad hostname: %v, want InvalidArgument", err)
	}

	refusesOutsideTheShare(ctx, t, c, share)

	const id = "bb1"
	bundle := makeBundle(t, share, id, []string{"sh", "-c",
		"echo hello-from-container; hostname; cat /proc/sys/net/ipv4/ip_forward; echo ready; exec sleep 600"})
	// the guest's view of the share and of Setup's resolv.conf, with the
	// share's static busybox (the guest itself has no shell)
	bb := guestShare + "/" + id + "/rootfs/bin/busybox"
	r, err := sb.DebugExec(ctx, &agentapi.DebugExecRequest{Args: []string{bb, "cat", "/etc/resolv.conf"}})
	if err != nil {
		t.Fatalf("debug exec: %v", err)
	}
	if r.GetExitCode() != 0 || !strings.Contains(string(r.GetStdout()), "nameserver 10.0.2.3") || !strings.Contains(string(r.GetStdout()), "example.test") {
		t.Errorf("guest resolv.conf after Setup: exit %d, %q %q", r.GetExitCode(), r.GetStdout(), r.GetStderr())
	}

	task := c.Task()
	if _, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: bundle,
		Stdout: agentapi.StdioPath(id, "", agentapi.Stdout), Stderr: agentapi.StdioPath(id, "", agentapi.Stderr)}); err != nil {
		if strings.Contains(err.Error(), "pivot_root") {
			t.Fatalf("create: %v\n(the guest's / is the initramfs (rootfs), which pivot_root(2) cannot leave: "+
				"the agent must run runc create with --no-pivot (go-runc CreateOpts.NoPivot) there, or move / to a tmpfs at boot)", err)
		}
		t.Fatalf("create: %v", err)
	}
	out, err := c.Stdout(ctx, id, "")
	if err != nil {
		t.Fatalf("stdout stream: %v", err)
	}
	defer out.Close()
	if _, err := task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatalf("start: %v", err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	for len(got) == 0 || got[len(got)-1] != "ready" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stdout ended early: %q", got)
			}
			got = append(got, l)
		case <-time.After(60 * time.Second):
			t.Fatalf("no \"ready\" on stdout after 60 s: %q", got)
		}
	}
	if want := []string{"hello-from-container", "vmtest-pod", "1", "ready"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stdout %q, want %q", got, want)
	}

	exitCode := func(execID string, args []string) uint32 {
		t.Helper()
		// as containerd sends it: the JSON of the OCI process
		pj, err := json.Marshal(&specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}})
		if err != nil {
			t.Fatal(err)
		}
		p := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: pj}
		if _, err := task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: execID, Spec: p}); err != nil {
			t.Fatalf("exec %s: %v", execID, err)
		}
		if _, err := task.Start(ctx, &taskapi.StartRequest{ID: id, ExecID: execID}); err != nil {
			t.Fatalf("start exec %s: %v", execID, err)
		}
		w, err := task.Wait(ctx, &taskapi.WaitRequest{ID: id, ExecID: execID})
		if err != nil {
			t.Fatalf("wait exec %s: %v", execID, err)
		}
		if _, err := task.Delete(ctx, &taskapi.DeleteRequest{ID: id, ExecID: execID}); err != nil {
			t.Errorf("delete exec %s: %v", execID, err)
		}
		return w.GetExitStatus()
	}
	if code := exitCode("e7", []string{"sh", "-c", "exit 7"}); code != 7 {
		t.Errorf("exec sh -c 'exit 7': exit %d", code)
	}
	// mkdir(2) is denied by the bundle's seccomp profile (/tmp is a
	// writable tmpfs): mkdir fails
	if code := exitCode("seccomp", []string{"mkdir", "/tmp/denied"}); code == 0 {
		t.Errorf("exec mkdir with mkdir denied by seccomp: exit 0 (seccomp not enforced?)")
	}

	if _, err := task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	w, err := task.Wait(ctx, &taskapi.WaitRequest{ID: id})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if w.GetExitStatus() != 128+uint32(syscall.SIGKILL) {
		t.Errorf("exit status after SIGKILL: %d, want 137", w.GetExitStatus())
	}
	// the stream ends once the container is gone
	rest, _ := io.ReadAll(readerOf(lines))
	t.Logf("stdout after kill: %q", rest)
	if _, err := task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := task.State(ctx, &taskapi.StateRequest{ID: id}); !errdefs.IsNotFound(err) {
		t.Errorf("state after delete: %v, want NotFound", err)
	}

	t0 := time.Now()
	if _, err := sb.Shutdown(ctx, &agentapi.ShutdownRequest{Reason: "vmtest"}); err != nil {
		select {
		case <-vm.Done(): // powered off before the answer got out
		default:
			t.Errorf("shutdown: %v", err)
		}
	}
	if err := vm.Wait(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("QEMU after Shutdown: %v (want a clean exit)", err)
	}
	t.Logf("QEMU exited cleanly %.2f s after Shutdown", time.Since(t0).Seconds())
}

// readerOf drains a line channel (waiting at most 10 s for its end).
func readerOf(lines <-chan string) io.Reader {
	var b strings.Builder
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return strings.NewReader(b.String())
			}
			b.WriteString(l + "\n")
		case <-deadline:
			return strings.NewReader(b.String())
		}
	}
}

// TestVMKilled: SIGKILL to QEMU under a pending call. The call fails with
// Unavailable, the client's Done closes, and a new Dial fails at once naming
// the VMM's exit instead of waiting out its deadline.
func TestVMKilled(t *testing.T) {
	vm, _, c := bootAgent(t)
	pending := make(chan error, 1)
	go func() {
		// a long poll the agent holds for 60 s: in flight when QEMU dies
		_, err := c.Sandbox().GetEvents(context.Background(), &agentapi.GetEventsRequest{AfterSeq: 1 << 60, TimeoutMs: 60000})
		pending <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case err := <-pending:
		if err == nil {
			t.Fatal("pending call succeeded after QEMU was killed")
		}
		t.Logf("pending call failed after %s: %v", time.Since(t0).Round(time.Millisecond), err)
		if !errdefs.IsUnavailable(err) && !errors.Is(err, io.EOF) {
			t.Logf("note: pending call error is not Unavailable: %T", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pending call still running 15 s after QEMU was killed")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("client Done not closed 5 s after QEMU was killed")
	}
	if err := vm.Wait(ctxTimeout(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("QEMU exit: %v, want signal: killed", err)
	}
	t1 := time.Now()
	_, err := dial(ctxTimeout(t, 30*time.Second), vm)
	took := time.Since(t1)
	if err == nil {
		t.Fatal("dial after kill succeeded")
	}
	t.Logf("dial after kill failed in %s: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, agentclient.ErrVMMExited) || !strings.Contains(err.Error(), "killed") {
		t.Errorf("dial error does not name the VMM exit: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("dial took %s to notice the dead VMM", took)
	}
}

// TestAgentCrash crashes the agent itself: a fatal signal to PID 1 through
// the agent's DebugExec, with the share's busybox (the guest has no shell).
// A PID 1 only receives the signals it has a handler for; the Go runtime
// has one for SIGILL and SIGABRT and crashes on them when they come from
// kill(2) (the agent ignores SIGQUIT, SIGTERM and friends, so that a
// process of a shared-PID pod cannot stop it), so PID 1 dies. The
// kernel then panics ("Attempted to kill init!"), panic=-1 reboots at once
// and QEMU's -no-reboot turns that into an exit: the client sees its
// connection break, and a new Dial fails fast naming the VMM exit. The
// console proves it was the agent that died.
func TestAgentCrash(t *testing.T) {
	vm, share, c := bootAgent(t)
	makeBundle(t, share, "tools", []string{"true"}) // only for its busybox
	bb := guestShare + "/tools/rootfs/bin/busybox"
	ctx := ctxTimeout(t, 60*time.Second)
	crashed := false
	for _, sig := range []string{"ILL", "ABRT"} {
		_, err := c.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{Args: []string{bb, "kill", "-" + sig, "1"}})
		t.Logf("debug exec kill -%s 1: %v", sig, err)
		select {
		case <-c.Done():
			crashed = true
		case <-time.After(15 * time.Second):
			t.Logf("the agent survived SIG%s (it handles it)", sig)
		}
		if crashed {
			break
		}
	}
	if !crashed {
		t.Fatal("the agent survived SIGILL and SIGABRT: no way to crash it from inside")
	}
	if _, err := c.Sandbox().Health(ctx, &agentapi.HealthRequest{}); err == nil {
		t.Error("Health on the broken connection succeeded")
	} else {
		t.Logf("Health after the crash: %v", err)
	}
	if err := vm.Wait(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Logf("QEMU exit after the guest panic: %v", err)
	}
	if !strings.Contains(vm.Console(), "Attempted to kill init") {
		t.Errorf("no kernel panic for PID 1 on the console:\n%s", vm.Tail(30))
	}
	t1 := time.Now()
	_, err := dial(ctxTimeout(t, 30*time.Second), vm)
	if err == nil {
		t.Fatal("dial after the crash succeeded")
	}
	t.Logf("dial after the crash failed in %s: %v", time.Since(t1).Round(time.Millisecond), err)
	if !errors.Is(err, agentclient.ErrVMMExited) || !strings.Contains(err.Error(), "Attempted to kill init") {
		t.Errorf("dial error does not say the VMM is gone after the guest's panic: %v", err)
	}
}

// refusesOutsideTheShare: the agent of a real guest refuses a bundle that is
// not below its share, by its name or through a symlink the host put in the
// share (which the guest resolves in its own root), and a bundle whose rootfs
// leads out; nothing of the refused containers is left.
func refusesOutsideTheShare(ctx context.Context, t *testing.T, c *agentclient.Client, share string) {
	t.Helper()
	makeBundle(t, share, "rootout", []string{"true"})
	if err := os.RemoveAll(filepath.Join(share, "rootout", "rootfs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(share, "rootout", "rootfs")); err != nil {
		t.Fatal(err)
	}
	// esc -> the guest's /etc (a link resolves in the guest's root)
	if err := os.Symlink("/etc", filepath.Join(share, "esc")); err != nil {
		t.Fatal(err)
	}
	task := c.Task()
	for i, cs := range []struct{ bundle, field string }{
		{"/etc", "bundle"},
		{guestShare, "bundle"},
		{guestShare + "/../etc", "bundle"},
		{guestShare + "/esc", "bundle"},
		{guestShare + "/rootout", "root"},
	} {
		id := fmt.Sprintf("out%d", i)
		_, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: cs.bundle})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), cs.field) {
			t.Errorf("create with bundle %s: %v, want InvalidArgument naming %s", cs.bundle, err, cs.field)
		}
		if _, err := task.State(ctx, &taskapi.StateRequest{ID: id}); !errdefs.IsNotFound(err) {
			t.Errorf("container %s after its refused create: %v, want NotFound", id, err)
		}
	}
	// a link that stays in the share (by the share's absolute path) leads
	// to a bundle inside it: taken, by its real path
	makeBundle(t, share, "inb", []string{"true"})
	if err := os.Symlink(guestShare, filepath.Join(share, "in")); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: "inb", Bundle: guestShare + "/in/inb"}); err != nil {
		t.Errorf("create with a bundle through a link inside the share: %v", err)
	} else if _, err := task.Delete(ctx, &taskapi.DeleteRequest{ID: "inb"}); err != nil {
		t.Errorf("delete inb: %v", err)
	}
}
