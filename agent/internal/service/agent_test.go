package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/agent/internal/reaper"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

var (
	reaperOnce sync.Once
	theReaper  *reaper.Reaper
)

// testReaper is one reaper for the whole test binary, as in the guest.
func testReaper() *reaper.Reaper {
	reaperOnce.Do(func() {
		theReaper = reaper.New()
		go theReaper.Run(context.Background())
	})
	return theReaper
}

type harness struct {
	agent  *Agent
	client *agentclient.Client
	sys    *fakeSystem
	ioRoot string
	dir    string
}

// newHarness runs the agent's services in-process over a net.Pipe, with the
// fake backend and system, and connects agentclient to it.
func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	sys := &fakeSystem{off: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// the PID-1 reaper, as in the guest: this test binary's only children
	// are DebugExec's
	rp := testReaper()
	a, err := New(ctx, Config{Backend: fakeBackend{}, StateDir: filepath.Join(dir, "task"), IORoot: filepath.Join(dir, "io"),
		System: sys, Monitor: rp, Features: []string{"fake"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Server.Close() })
	hostEnd, guestEnd := net.Pipe()
	l := &pipeListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
	l.c <- guestEnd
	go func() { _ = a.Serve(ctx, l) }()
	c, err := agentclient.New(ctx, hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// runs first: remove what the test left, so that no task record is
	// written while the temporary directory is removed
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		for _, id := range a.Tasks.Containers() {
			_, _ = c.Task().Kill(dctx, &taskapi.KillRequest{ID: id, Signal: 9, All: true})
			_, _ = c.Task().Wait(dctx, &taskapi.WaitRequest{ID: id})
			_, _ = c.Task().Delete(dctx, &taskapi.DeleteRequest{ID: id})
		}
	})
	return &harness{agent: a, client: c, sys: sys, ioRoot: filepath.Join(dir, "io"), dir: dir}
}

type pipeListener struct {
	c    chan net.Conn
	done chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

// bundle writes a config.json whose process args carry the fake's exit code.
func (h *harness) bundle(t *testing.T, id string, args ...string) string {
	b := filepath.Join(h.dir, "share", id)
	if err := os.MkdirAll(b, 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(&specs.Spec{Version: specs.Version, Process: &specs.Process{Args: args, Cwd: "/"}})
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *harness) stdioPath(id, exec, stream string) string {
	return h.agent.Hub.path(id, exec, stream)
}

func TestHealthReportsTheProtocolVersion(t *testing.T) {
	h := newHarness(t)
	hr := h.client.Health()
	if hr.GetVersion() != agentapi.Version || hr.GetMajor() != agentapi.Major || hr.GetPid() == 0 || hr.GetFeatures()[0] != "fake" {
		t.Fatalf("health = %v", hr)
	}
	if err := agentapi.CheckVersion(hr); err != nil {
		t.Fatal(err)
	}
}

func TestSetupRejectsBadFieldsAndAppliesNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	good := func() *agentapi.SetupRequest {
		return &agentapi.SetupRequest{
			Hostname:   "pod-1.example",
			Dns:        &agentapi.DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}},
			Sysctls:    map[string]string{"net.ipv4.ip_forward": "1"},
			Interfaces: []*agentapi.Interface{{Name: "eth0", HwAddr: "02:42:ac:11:00:02", Addresses: []string{"10.88.0.5/16"}, Mtu: 1500}},
			Routes:     []*agentapi.Route{{Gateway: "10.88.0.1", Device: "eth0"}, {Destination: "10.88.0.0/16", Device: "eth0"}},
		}
	}
	cases := []struct {
		field string
		mut   func(r *agentapi.SetupRequest)
	}{
		{"hostname", func(r *agentapi.SetupRequest) { r.Hostname = "bad_host" }},
		{"hostname", func(r *agentapi.SetupRequest) { r.Hostname = strings.Repeat("a", 65) }},
		{"dns.servers[0]", func(r *agentapi.SetupRequest) { r.Dns.Servers = []string{"not-an-ip"} }},
		{"dns.options[0]", func(r *agentapi.SetupRequest) { r.Dns.Options = []string{"ndots:5\nnameserver 1.2.3.4"} }},
		{"sysctls", func(r *agentapi.SetupRequest) { r.Sysctls = map[string]string{"../../etc/passwd": "x"} }},
		{"sysctls[net.ipv4.nonexistent]", func(r *agentapi.SetupRequest) { r.Sysctls["net.ipv4.nonexistent"] = "1" }},
		{"sysctls[net.ipv4.ip_forward]", func(r *agentapi.SetupRequest) { r.Sysctls["net.ipv4.ip_forward"] = "1\n2" }},
		{"interfaces[0].hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].HwAddr = "zz:zz" }},
		{"interfaces[0].name", func(r *agentapi.SetupRequest) { r.Interfaces[0].Name = "eth0/../x" }},
		{"interfaces[0].addresses[0]", func(r *agentapi.SetupRequest) { r.Interfaces[0].Addresses = []string{"10.88.0.5"} }},
		{"interfaces[0].mtu", func(r *agentapi.SetupRequest) { r.Interfaces[0].Mtu = 20 }},
		{"routes[0].destination", func(r *agentapi.SetupRequest) { r.Routes[0].Gateway = "" }},
		{"routes[1].destination", func(r *agentapi.SetupRequest) { r.Routes[1].Destination = "10.88.0.0/99" }},
		{"routes[0].gateway", func(r *agentapi.SetupRequest) {
			r.Routes[0] = &agentapi.Route{Destination: "fd00::/64", Gateway: "10.0.0.1"}
		}},
		{"routes[1].device", func(r *agentapi.SetupRequest) { r.Routes[1].Device = "" }},
		{"interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "01:00:5e:00:00:01" }},
		{"entropy", func(r *agentapi.SetupRequest) { r.Entropy = make([]byte, 31) }},
	}
	for _, c := range cases {
		r := good()
		c.mut(r)
		_, err := h.client.Sandbox().Setup(ctx, r)

		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: got %v, want InvalidArgument naming %s", c.field, err, c.field)
		}
	}
	if a := h.sys.appliedCopy(); len(a) != 0 {
		t.Fatalf("invalid requests applied %q", a)
	}
	if _, err := h.client.Sandbox().Setup(ctx, good()); err != nil {
		t.Fatal(err)
	}
	want := []string{"hostname pod-1.example", "resolv nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n",
		"sysctl net.ipv4.ip_forward=1", "link eth0 02:42:ac:11:00:02", "route invalid Prefix via 10.88.0.1", "route 10.88.0.0/16 via invalid IP"}
	got := h.sys.appliedCopy()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("applied\n %q\nwant\n %q", got, want)
	}
}

// createStart creates and starts a container with all three streams.
func (h *harness) createStart(t *testing.T, id string, args ...string) {
	t.Helper()
	ctx := context.Background()
	_, err := h.client.Task().Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: h.bundle(t, id, args...),
		Stdin: h.stdioPath(id, "", agentapi.Stdin), Stdout: h.stdioPath(id, "", agentapi.Stdout), Stderr: h.stdioPath(id, "", agentapi.Stderr)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Task().Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
}

func TestStdioStreamsCarryBytesBothWays(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.createStart(t, "c1", "exit=0")
	in, err := h.client.Stdin(ctx, "c1", "")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 10000) // 160 KB: more than a pipe buffer and several chunks
	go func() {
		_, _ = in.Write([]byte("ping\n"))
		_, _ = in.Write([]byte(big))
		if err := in.Close(); err != nil {
			t.Errorf("stdin close: %v", err)
		}
	}()
	out, err := h.client.Stdout(ctx, "c1", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello\nping\n"+big {
		t.Fatalf("stdout: %d bytes, want %d (starts %q)", len(got), len("hello\nping\n")+len(big), got[:min(20, len(got))])
	}
	errr, err := h.client.Stderr(ctx, "c1", "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(errr); err != nil || string(b) != "bye\n" {
		t.Fatalf("stderr %q, %v", b, err)
	}
	w, err := h.client.Task().Wait(ctx, &taskapi.WaitRequest{ID: "c1"})
	if err != nil || w.GetExitStatus() != 0 {
		t.Fatalf("wait %v %v", w, err)
	}
	if _, err := h.client.Task().Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.ioRoot, "c1")); !os.IsNotExist(err) {
		t.Fatalf("FIFO dir left after delete: %v", err)
	}
}

func TestOutputSurvivesAReattach(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.createStart(t, "c2", "exit=0")
	// first reader takes "hello\n" and goes away (a host that reconnects)
	rctx, rcancel := context.WithCancel(ctx)
	out, err := h.client.Stdout(rctx, "c2", "")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("first read %q %v", buf, err)
	}
	out.Close() // detaches: the agent's reader stops
	rcancel()
	out2, err := h.client.Stdout(ctx, "c2", "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := h.client.Stdin(ctx, "c2", "")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("after\n"))
	in.Close()
	got, err := io.ReadAll(out2)
	if err != nil || string(got) != "after\n" {
		t.Fatalf("second reader got %q, %v", got, err)
	}
}

func TestExecStreamsAndExitCode(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.createStart(t, "c3", "exit=0")
	spec, _ := json.Marshal(&specs.Process{Args: []string{"exit=9"}, Cwd: "/"})
	_, err := h.client.Task().Exec(ctx, &taskapi.ExecProcessRequest{ID: "c3", ExecID: "e1",
		Spec:   &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec},
		Stdout: h.stdioPath("c3", "e1", agentapi.Stdout)})
	if err != nil {
		t.Fatal(err)
	}
	// attach before Start: no premature EOF
	out, err := h.client.Stdout(ctx, "c3", "e1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := h.client.Task().Start(ctx, &taskapi.StartRequest{ID: "c3", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out)
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("exec stdout %q %v", got, err)
	}
	w, err := h.client.Task().Wait(ctx, &taskapi.WaitRequest{ID: "c3", ExecID: "e1"})
	if err != nil || w.GetExitStatus() != 9 {
		t.Fatalf("exec wait %v %v", w, err)
	}
}

func TestCreateRejectsHostStdioPaths(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.client.Task().Create(ctx, &taskapi.CreateTaskRequest{ID: "c4", Bundle: h.bundle(t, "c4"),
		Stdout: "/run/containerd/fifo/123/c4-stdout"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("got %v, want InvalidArgument naming stdout", err)
	}
	// another container's path is refused too
	_, err = h.client.Task().Create(ctx, &taskapi.CreateTaskRequest{ID: "c4", Bundle: h.bundle(t, "c4"),
		Stdout: h.stdioPath("other", "", agentapi.Stdout)})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.ioRoot, "c4")); !os.IsNotExist(err) {
		t.Fatalf("left %v", err)
	}
	if _, err := h.client.Stdout(ctx, "c4", ""); err != nil {
		t.Fatal(err) // the stream opens; the error comes on the first read
	}
}

func TestEventsLongPollDeliversTheExit(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// an empty poll waits for its timeout and returns nothing
	start := time.Now()
	r, err := h.client.Sandbox().GetEvents(ctx, &agentapi.GetEventsRequest{TimeoutMs: 100})
	if err != nil || len(r.GetEvents()) != 0 || time.Since(start) < 90*time.Millisecond {
		t.Fatalf("empty poll: %v %v after %s", r, err, time.Since(start))
	}
	// a poll waiting while the container runs gets the events as they come
	var topics []string
	var exit *apievents.TaskExit
	done := make(chan error, 1)
	go func() {
		_, err := h.client.Events(ctx, 0, func(ev *agentapi.Event) error {
			topics = append(topics, ev.GetTopic())
			if ev.GetTopic() == "/tasks/exit" {
				v, err := typeurl.UnmarshalAny(ev.GetEvent())
				if err != nil {
					return err
				}
				exit = v.(*apievents.TaskExit)
				return errStop
			}
			return nil
		})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ctxID := "c5"
	_, err = h.client.Task().Create(ctx, &taskapi.CreateTaskRequest{ID: ctxID, Bundle: h.bundle(t, ctxID, "exit=3")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Task().Start(ctx, &taskapi.StartRequest{ID: ctxID}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if strings.Join(topics, " ") != "/tasks/create /tasks/start /tasks/exit" || exit.GetExitStatus() != 3 || exit.GetContainerID() != ctxID {
		t.Fatalf("topics %v exit %v", topics, exit)
	}
	// acknowledged events are not sent again; unacknowledged ones are
	r, err = h.client.Sandbox().GetEvents(ctx, &agentapi.GetEventsRequest{AfterSeq: 2, TimeoutMs: 100})
	if err != nil || len(r.GetEvents()) != 1 || r.GetEvents()[0].GetSeq() != 3 {
		t.Fatalf("after ack: %v %v", r, err)
	}
}

var errStop = errors.New("stop")

func TestDebugExecExitCodeAndOutput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	r, err := h.client.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{Args: []string{"sh", "-c", "read x; echo out $x; echo err >&2; exit 5"}, Stdin: []byte("in\n")})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetExitCode() != 5 || string(r.GetStdout()) != "out in\n" || string(r.GetStderr()) != "err\n" {
		t.Fatalf("got %v", r)
	}
	r, err = h.client.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{Args: []string{"/bin/sleep", "10"}, TimeoutMs: 100})
	if err != nil || r.GetExitCode() != 128+9 {
		t.Fatalf("timeout: %v %v", r, err)
	}
	_, err = h.client.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{Args: []string{"no-such-program"}})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("missing program: %v", err)
	}
	_, err = h.client.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("no args: %v", err)
	}
}

func TestSyncClockAndShutdown(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	off, err := h.client.SyncClock(ctx, time.Hour)
	if err != nil || off > time.Second || off < -time.Second {
		t.Fatalf("offset %s, %v", off, err)
	}
	if len(h.sys.steps) != 0 {
		t.Fatal("stepped within skew")
	}
	if _, err := h.client.SyncClock(ctx, -1); err != nil { // any offset exceeds a negative skew... except exactly 0
		t.Fatal(err)
	}
	if _, err := h.client.Sandbox().Shutdown(ctx, &agentapi.ShutdownRequest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-h.sys.off:
		if r != "test" {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no power-off")
	}
}

// TestRoundTrip measures a Health round trip in-process (net.Pipe and a unix
// socket pair): the agent protocol's own overhead, without a VM.
func TestRoundTrip(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const n = 2000
	d := make([]time.Duration, n)
	for i := range d {
		s := time.Now()
		if _, err := h.client.Sandbox().Health(ctx, &agentapi.HealthRequest{}); err != nil {
			t.Fatal(err)
		}
		d[i] = time.Since(s)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	t.Logf("Health round trip over net.Pipe, n=%d: p50 %s, p99 %s", n, d[n/2], d[n*99/100])

	// stdout throughput through the hub, the FIFOs and the credit-controlled
	// Output stream (the fake copies stdin to stdout)
	h.createStart(t, "tp", "exit=0")
	out, err := h.client.Stdout(ctx, "tp", "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := h.client.Stdin(ctx, "tp", "")
	if err != nil {
		t.Fatal(err)
	}
	const size = 32 << 20
	start := time.Now()
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < size/len(buf); i++ {
			_, _ = in.Write(buf)
		}
		_ = in.Close()
	}()
	got, err := io.Copy(io.Discard, out)
	if err != nil || got != size+int64(len("hello\n")) {
		t.Fatalf("copied %d, %v", got, err)
	}
	el := time.Since(start)
	t.Logf("stdin → process → stdout through the Streams service, in-process: %d MiB in %s (%.0f MiB/s)", size>>20, el.Round(time.Millisecond), float64(size>>20)/el.Seconds())
}

// A reader that stalls for longer than ttrpc's one-second grace loses
// nothing: the agent sends only what the client granted.
func TestOutputFlowControlSurvivesAStalledReader(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.createStart(t, "c6", "exit=0")
	out, err := h.client.Stdout(ctx, "c6", "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := h.client.Stdin(ctx, "c6", "")
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20 // 128 chunks: twice ttrpc's 64-message stream buffer
	go func() {
		_, _ = in.Write(make([]byte, size))
		_ = in.Close()
	}()
	time.Sleep(1500 * time.Millisecond)
	n, err := io.Copy(io.Discard, out)
	if err != nil || n != int64(len("hello\n")+size) {
		t.Fatalf("read %d bytes, %v; want %d", n, err, len("hello\n")+size)
	}
}

// Errors come back as errdefs errors, and a dead connection as Unavailable.
func TestClientErrorsAreErrdefs(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.client.Task().State(ctx, &taskapi.StateRequest{ID: "nope"}); !errdefs.IsNotFound(err) {
		t.Fatalf("state of a missing task: %v", err)
	}
	h.client.Close()
	if _, err := h.client.Sandbox().Health(ctx, &agentapi.HealthRequest{}); !errdefs.IsUnavailable(err) {
		t.Fatalf("health on a closed connection: %v", err)
	}
}
