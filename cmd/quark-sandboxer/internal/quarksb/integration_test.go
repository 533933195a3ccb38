package quarksb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// Integration tests of the mapping between containerd's host view and the
// sandbox's, against the stand-in, which refuses any path that does not
// resolve inside the sandbox root and any namespace that is not the
// sandbox's.

// k8s is a request context in containerd's k8s.io namespace.
func k8s() context.Context {
	return ttrpc.WithMetadata(context.Background(), ttrpc.MD{"containerd-namespace-ttrpc": []string{"k8s.io"}})
}

// ctrBundle makes a busybox bundle dir/id running script, in pod podID,
// whose namespaces are the sandbox's as containerd names them from the pid
// Controller.Start returned (pid 0: none named), with mounts added.
func ctrBundle(t *testing.T, dir, id, podID string, pid uint32, script string, mounts ...specs.Mount) string {
	t.Helper()
	if err := guestvm.BusyboxBundle(dir, id, []string{"/bin/sh", "-c", script}, nil); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, id)
	var sp specs.Spec
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(raw, &sp); err != nil {
		t.Fatal(err)
	}
	if pid != 0 {
		for _, k := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace} {
			n := map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net"}[k]
			var out []specs.LinuxNamespace
			for _, ns := range sp.Linux.Namespaces {
				if ns.Type != k {
					out = append(out, ns)
				}
			}
			sp.Linux.Namespaces = append(out, specs.LinuxNamespace{Type: k, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, n)})
		}
	}
	sp.Mounts = append(sp.Mounts, mounts...)
	sp.Annotations = map[string]string{sandbox.PodAnnotation: podID}
	raw, _ = json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// same reports whether a and b are the same inode.
func same(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

// TestMapping: a pod in its own network namespace, a container with the
// sandbox's namespaces, bind mounts, the pod's files, stdout and stderr, an
// exec: what the container sees is what containerd gave, through Quark's
// view of the files.
func TestMapping(t *testing.T) {
	quark, _ := requirements(t)
	sb := suiteSandboxer(quark)
	dirs := sandboxtest.NewDirs(t)
	d := sandboxtest.Open(t, sb, dirs.State)
	// the pod's network namespace, as CNI would have set it up: held by a
	// process of its own
	holder := exec.Command("sleep", "600")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	netns := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	pod := &runtime.PodSandboxConfig{Hostname: "quark-pod", DnsConfig: &runtime.DNSConfig{Servers: []string{"10.9.9.9"}},
		Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: suiteCgroupParent, Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}}
	_, err := d.Controller.Create(k8s(), &sandboxapi.ControllerCreateRequest{SandboxID: "mp", Sandboxer: Handler,
		NetnsPath: netns, Options: sandboxtest.PodOptions(t, pod)})
	sandboxtest.Must(t, "create pod", err)
	st, err := d.Controller.Start(k8s(), &sandboxapi.ControllerStartRequest{SandboxID: "mp"})
	sandboxtest.Must(t, "start pod", err)
	pid := st.GetPid()
	if got := sandboxOf(quark, "mp"); len(got) != 1 || uint32(got[0]) != pid {
		t.Fatalf("Start's pid %d, the sandbox process %v", pid, got)
	}
	root := filepath.Join(dirs.State, "sandboxes", "mp", bundleDir)

	vol := filepath.Join(dirs.Work, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	mkfileT(t, filepath.Join(vol, "v"), "volume-data\n")
	mkfileT(t, filepath.Join(dirs.Work, "single"), "single-file\n")
	mkfileT(t, filepath.Join(dirs.Work, "term"), "")
	script := `hostname; grep -c quark-pod /etc/hosts; cat /data/v; cat /srv/single; grep nameserver /etc/resolv.conf
cat /proc/sys/net/ipv4/ip_forward; (echo > /data/w) 2>/dev/null || echo volume-read-only; test -e /dev/termination-log && echo term-log
echo err-line >&2; exit 7`
	bundle := ctrBundle(t, dirs.Work, "c1", "mp", pid, script,
		specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/srv/single", Type: "bind", Source: filepath.Join(dirs.Work, "single"), Options: []string{"bind"}},
		specs.Mount{Destination: "/dev/termination-log", Type: "bind", Source: filepath.Join(dirs.Work, "term"), Options: []string{"rbind"}})
	out := tasktest.NewOutput(t, dirs.Work, "c1-out")
	errF := tasktest.NewOutput(t, dirs.Work, "c1-err")
	_, err = d.Tasks.Create(k8s(), &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle, Stdout: out.Path, Stderr: errF.Path})
	sandboxtest.Must(t, "create c1", err)

	// the host's side of the mapping, as Kuasar lays it out
	ctrDir := filepath.Join(root, "c1")
	if !same(filepath.Join(ctrDir, "stdout"), out.Path) || !same(filepath.Join(ctrDir, "stderr"), errF.Path) {
		t.Error("containerd's FIFOs are not bound at <bundle>/c1/{stdout,stderr}")
	}
	var cfg specs.Spec
	raw, _ := os.ReadFile(filepath.Join(ctrDir, "config.json"))
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Mounts {
		if m.Type == "bind" && m.Destination != "/dev/termination-log" {
			t.Errorf("config.json keeps the bind %s (%s): Quark takes none", m.Destination, m.Source)
		}
		if m.Destination == "/dev/termination-log" && !strings.HasPrefix(m.Source, "/c1/mounts/") {
			t.Errorf("a bind below /dev: source %q, want one inside the sandbox (/c1/mounts/<n>)", m.Source)
		}
	}
	if cfg.Root.Path != "rootfs" {
		t.Errorf("root.path %q", cfg.Root.Path)
	}

	_, err = d.Tasks.Start(k8s(), &taskapi.StartRequest{ID: "c1"})
	sandboxtest.Must(t, "start c1", err)
	w, err := d.Tasks.Wait(k8s(), &taskapi.WaitRequest{ID: "c1"})
	sandboxtest.Must(t, "wait c1", err)
	if w.GetExitStatus() != 7 {
		t.Errorf("exit %d, want 7", w.GetExitStatus())
	}
	got := out.WaitEOF(t, 5*time.Second)
	want := "quark-pod\n1\nvolume-data\nsingle-file\nnameserver 10.9.9.9\n1\nvolume-read-only\nterm-log\n"
	if got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	if e := errF.WaitEOF(t, 5*time.Second); e != "err-line\n" {
		t.Errorf("stderr %q", e)
	}

	// a container whose spec names namespaces that are not the sandbox's
	bad := ctrBundle(t, dirs.Work, "c2", "mp", 1, "true")
	_, err = d.Tasks.Create(k8s(), &taskapi.CreateTaskRequest{ID: "c2", Bundle: bad})
	sandboxtest.WantCode(t, "create with another process's namespaces", err, codes.InvalidArgument)
	if err == nil || !strings.Contains(err.Error(), "not the sandbox's") {
		t.Errorf("the refusal does not say why: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "c2")); !os.IsNotExist(err) {
		t.Errorf("a refused create left <bundle>/c2: %v", err)
	}

	// an exec: its FIFO bound at <bundle>/<id>/<exec>-stdout while it lives
	run := ctrBundle(t, dirs.Work, "c3", "mp", pid, "exec sleep 3600")
	_, err = d.Tasks.Create(k8s(), &taskapi.CreateTaskRequest{ID: "c3", Bundle: run})
	sandboxtest.Must(t, "create c3", err)
	_, err = d.Tasks.Start(k8s(), &taskapi.StartRequest{ID: "c3"})
	sandboxtest.Must(t, "start c3", err)
	xout := tasktest.NewOutput(t, dirs.Work, "x1-out")
	proc, _ := json.Marshal(&specs.Process{Args: []string{"/bin/sh", "-c", "hostname; exit 3"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	_, err = d.Tasks.Exec(k8s(), &taskapi.ExecProcessRequest{ID: "c3", ExecID: "x1", Stdout: xout.Path,
		Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: proc}})
	sandboxtest.Must(t, "exec", err)
	if !same(filepath.Join(root, "c3", "x1-stdout"), xout.Path) {
		t.Error("the exec's FIFO is not bound at <bundle>/c3/x1-stdout")
	}
	_, err = d.Tasks.Start(k8s(), &taskapi.StartRequest{ID: "c3", ExecID: "x1"})
	sandboxtest.Must(t, "start exec", err)
	xw, err := d.Tasks.Wait(k8s(), &taskapi.WaitRequest{ID: "c3", ExecID: "x1"})
	if err != nil || xw.GetExitStatus() != 3 {
		t.Errorf("exec exit: %v %v", xw, err)
	}
	if got := xout.WaitEOF(t, 5*time.Second); got != "quark-pod\n" {
		t.Errorf("exec stdout %q", got)
	}
	_, err = d.Tasks.Delete(k8s(), &taskapi.DeleteRequest{ID: "c3", ExecID: "x1"})
	sandboxtest.Must(t, "delete exec", err)
	if _, err := os.Stat(filepath.Join(root, "c3", "x1-stdout")); !os.IsNotExist(err) {
		t.Errorf("the exec's FIFO binding stays after its delete: %v", err)
	}

	for _, id := range []string{"c1", "c3"} {
		_, _ = d.Tasks.Kill(k8s(), &taskapi.KillRequest{ID: id, Signal: 9})
		_, _ = d.Tasks.Wait(k8s(), &taskapi.WaitRequest{ID: id})
		_, err = d.Tasks.Delete(k8s(), &taskapi.DeleteRequest{ID: id})
		sandboxtest.Must(t, "delete "+id, err)
		if _, err := os.Stat(filepath.Join(root, id)); !os.IsNotExist(err) {
			t.Errorf("<bundle>/%s stays after the delete: %v", id, err)
		}
	}
	if left := mount.Below(mustMounts(t), root); len(left) != 1 || left[0] != root {
		t.Errorf("mounts below the sandbox root with no container: %v (want only Quark's bind of the root)", left)
	}
	// the stand-in's log (beside its pid file) names what it refused
	runDir := (&driver{cfg: testConfig(dirs.State, quark)}).runDirOf("mp")
	if b, _ := os.ReadFile(filepath.Join(runDir, "quark-standin.log")); strings.Count(string(b), "REFUSED") != 1 {
		t.Errorf("the stand-in refused %d requests, want 1 (c2's namespaces):\n%s", strings.Count(string(b), "REFUSED"), b)
	}
	_, err = d.Controller.Stop(k8s(), &sandboxapi.ControllerStopRequest{SandboxID: "mp"})
	sandboxtest.Must(t, "stop pod", err)
	_, err = d.Controller.Shutdown(k8s(), &sandboxapi.ControllerShutdownRequest{SandboxID: "mp"})
	sandboxtest.Must(t, "shutdown pod", err)
	sandboxtest.CheckClean(t, sb, "the mapping test", dirs.State)
}

func mustMounts(t *testing.T) []mount.Info {
	t.Helper()
	m, err := mount.Self()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mkfileT(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxKilled: the Quark sandbox process killed from outside, with a
// running container and exec: their Waits return (255: lost), the pod's
// Wait returns, and its shutdown leaves nothing.
func TestSandboxKilled(t *testing.T) {
	quark, _ := requirements(t)
	sb := suiteSandboxer(quark)
	dirs := sandboxtest.NewDirs(t)
	d := sandboxtest.Open(t, sb, dirs.State)
	_, err := d.Controller.Create(k8s(), sb.PodRequest(t, "kp"))
	sandboxtest.Must(t, "create pod", err)
	_, err = d.Controller.Start(k8s(), &sandboxapi.ControllerStartRequest{SandboxID: "kp"})
	sandboxtest.Must(t, "start pod", err)
	bundle := ctrBundle(t, dirs.Work, "k1", "kp", 0, "exec sleep 3600")
	out := tasktest.NewOutput(t, dirs.Work, "k1-out")
	_, err = d.Tasks.Create(k8s(), &taskapi.CreateTaskRequest{ID: "k1", Bundle: bundle, Stdout: out.Path})
	sandboxtest.Must(t, "create", err)
	_, err = d.Tasks.Start(k8s(), &taskapi.StartRequest{ID: "k1"})
	sandboxtest.Must(t, "start", err)
	proc, _ := json.Marshal(&specs.Process{Args: []string{"/bin/busybox", "sleep", "3600"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	_, err = d.Tasks.Exec(k8s(), &taskapi.ExecProcessRequest{ID: "k1", ExecID: "x",
		Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: proc}})
	sandboxtest.Must(t, "exec", err)
	_, err = d.Tasks.Start(k8s(), &taskapi.StartRequest{ID: "k1", ExecID: "x"})
	sandboxtest.Must(t, "start exec", err)

	pids := sandboxOf(quark, "kp")
	if len(pids) != 1 {
		t.Fatalf("sandbox processes: %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, x := range []string{"", "x"} {
		ctx, cancel := context.WithTimeout(k8s(), 10*time.Second)
		w, err := d.Tasks.Wait(ctx, &taskapi.WaitRequest{ID: "k1", ExecID: x})
		cancel()
		if err != nil || w.GetExitStatus() != sandbox.ExitCodeLost {
			t.Errorf("wait %q after the sandbox was killed: %v %v", x, w, err)
		}
	}
	if pw := sandboxtest.WaitPod(t, d, "kp"); pw.GetExitStatus() != sandbox.ExitCodeLost {
		t.Errorf("pod exit %d, want %d", pw.GetExitStatus(), sandbox.ExitCodeLost)
	}
	out.WaitEOF(t, 5*time.Second) // nobody writes containerd's FIFO any more
	_, err = d.Controller.Shutdown(k8s(), &sandboxapi.ControllerShutdownRequest{SandboxID: "kp"})
	sandboxtest.Must(t, "shutdown pod", err)
	sandboxtest.CheckClean(t, sb, "a killed sandbox", dirs.State)
}

// TestStartFailures: Quark's command line is Kuasar's; a quark that fails,
// exits without a pid file, or hangs fails Start with its output and
// leaves nothing (run directory, cgroup, process).
func TestStartFailures(t *testing.T) {
	_, _ = requirements(t)
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		mkfileT(t, p, "#!/bin/sh\necho \"$PWD $*\" > "+argsFile+"\n"+body+"\n")
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, body, want string
	}{
		{"fails", "echo quark-says-boom >&2; exit 1", "quark-says-boom"},
		{"nopid", "exit 0", "no pid file"},
		{"deadpid", `pidf=""; while [ $# -gt 0 ]; do [ "$1" = --pid-file ] && pidf=$2; shift; done; echo 999999 > "$pidf"`, "the Quark sandbox process"},
		{"hangs", "exec sleep 60", "quark.start_timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := script(c.name, c.body)
			sb := &sandboxtest.Sandboxer{Name: Name,
				New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
					cfg := testConfig(env.Dir, bin)
					cfg.Quark.StartTimeout = 1e9
					dr, be, err := Sandboxer().Build(env, cfg)
					if err != nil {
						t.Fatal(err)
					}
					return dr, be
				},
				Pod: suiteSandboxer(bin).Pod, Leftovers: suiteSandboxer(bin).Leftovers,
			}
			dirs := sandboxtest.NewDirs(t)
			d := sandboxtest.Open(t, sb, dirs.State)
			_, err := d.Controller.Create(k8s(), sb.PodRequest(t, "f1"))
			sandboxtest.Must(t, "create", err)
			t0 := time.Now()
			_, err = d.Controller.Start(k8s(), &sandboxapi.ControllerStartRequest{SandboxID: "f1"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("start: %v, want an error with %q", err, c.want)
			}
			if time.Since(t0) > 5*time.Second {
				t.Errorf("start took %s", time.Since(t0))
			}
			b, _ := os.ReadFile(argsFile)
			bundle := filepath.Join(dirs.State, "sandboxes", "f1", bundleDir)
			runDir := (&driver{cfg: testConfig(dirs.State, bin)}).runDirOf("f1")
			wantArgs := fmt.Sprintf("%s -r %s sandbox --task-socket %s/task.sock --id f1 --pid-file %s/quark.pid\n", bundle, bundle, runDir, runDir)
			if string(b) != wantArgs {
				t.Errorf("quark's cwd and command line:\n%s\nwant:\n%s", b, wantArgs)
			}
			if _, err := os.Stat(runDir); !os.IsNotExist(err) {
				t.Errorf("the run dir stays after a failed start: %v", err)
			}
			_, err = d.Controller.Shutdown(k8s(), &sandboxapi.ControllerShutdownRequest{SandboxID: "f1"})
			sandboxtest.Must(t, "shutdown", err)
			sandboxtest.CheckClean(t, sb, "a failed start", dirs.State)
			if left := standins(bin); len(left) > 0 {
				t.Errorf("quark processes left: %v", left)
			}
		})
	}
}
