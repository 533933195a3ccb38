package quarksb

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// The conformance suites against hack/standins/quark, the stand-in for
// Quark (built once per test binary, or MAGNETAR_QUARK), which runs the
// containers with the real runc: root, runc (MAGNETAR_RUNC, else
// _output/prefix/bin/runc, else PATH) and a static busybox.

var (
	// builtStandin is the directory of the stand-in this process built
	// (TestMain removes it).
	builtStandin string
	standinOnce  sync.Once
	standinBin   string
	standinErr   error
)

// requirements returns the stand-in quark and runc, or skips t.
func requirements(t *testing.T) (quark, runcBin string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, runc)")
	}
	if runcBin = tasktest.FindRunc("../../../.."); runcBin == "" {
		t.Skip("runc not found: set MAGNETAR_RUNC or run hack/install-tools.sh")
	}
	if !fileExists(guestvm.Busybox) {
		t.Skip("no static busybox (apt-get install busybox-static)")
	}
	standinOnce.Do(func() {
		if standinBin = os.Getenv("MAGNETAR_QUARK"); standinBin != "" {
			return
		}
		dir, err := os.MkdirTemp("", "quark-standin")
		if err != nil {
			standinErr = err
			return
		}
		standinBin = filepath.Join(dir, "quark")
		cmd := exec.Command("go", "build", "-o", standinBin, "../../../../hack/standins/quark")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			standinErr = fmt.Errorf("build the stand-in: %v\n%s", err, out)
		}
		// the crashing daemons of the suites (child processes) use it too
		os.Setenv("MAGNETAR_QUARK", standinBin)
		builtStandin = dir
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	t.Setenv("QUARK_STANDIN_RUNC", runcBin)
	return standinBin, runcBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	_ = cgroups.Delete(suiteCgroupParent)
	if builtStandin != "" {
		_ = os.RemoveAll(builtStandin)
	}
	os.Exit(code)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// testConfig is the configuration of a test daemon on dir.
func testConfig(dir, quark string) *Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.RunDir = filepath.Join(dir, "run")
	cfg.Quark.Binary = quark
	cfg.Quark.ConfigFile = ""
	return cfg
}

// hostNetPod is the CRI configuration of the suites' pods: host network
// (no netns to make), in cgroup parent /magnetar-quark-suite.
func hostNetPod(string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Hostname: "quark-suite", Linux: &runtime.LinuxPodSandboxConfig{
		CgroupParent: suiteCgroupParent,
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			Network: runtime.NamespaceMode_NODE}},
	}}
}

const suiteCgroupParent = "/magnetar-quark-suite"

// sandboxOf is the pid of pod id's sandbox process (the stand-in's boot
// process in the pod's cgroup); 0 when there is none.
func sandboxOf(quark, id string) []int {
	want := cgroups.PodPath(Handler, suiteCgroupParent, id)
	var out []int
	for _, p := range standins(quark) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if strings.HasSuffix(sc.Text(), ":"+want) {
				out = append(out, p.PID)
				break
			}
		}
	}
	return out
}

// standins are the live processes of the stand-in binary.
func standins(quark string) []proc.Process {
	return proc.Find(func(args []string) bool { return len(args) > 0 && args[0] == quark })
}

// suiteSandboxer is the quark sandboxer for the suites.
func suiteSandboxer(quark string) *sandboxtest.Sandboxer {
	return &sandboxtest.Sandboxer{
		Name: Name,
		New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
			d, be, err := Sandboxer().Build(env, testConfig(env.Dir, quark))
			if err != nil {
				t.Fatal(err)
			}
			return d, be
		},
		Pod: func(t *testing.T, id string) *sandboxapi.ControllerCreateRequest {
			return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: Handler, Options: sandboxtest.PodOptions(t, hostNetPod(id))}
		},
		KillPod: func(t *testing.T, _ *sandboxtest.Daemon, id string) {
			pids := sandboxOf(quark, id)
			if len(pids) != 1 {
				t.Fatalf("sandbox processes of pod %s: %v", id, pids)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
		Leftovers: func(t *testing.T, dir string) []string {
			var out []string
			for _, p := range standins(quark) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID)); strings.Contains(string(b), suiteCgroupParent+"/") {
					out = append(out, fmt.Sprintf("quark sandbox process %d: %s", p.PID, p.Line()))
				}
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "run"))
			for _, e := range ents {
				out = append(out, "run/"+e.Name())
			}
			for _, h := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
				ents, _ := os.ReadDir(filepath.Join(h, suiteCgroupParent))
				for _, e := range ents {
					if e.IsDir() {
						out = append(out, "cgroup "+filepath.Join(h, suiteCgroupParent, e.Name()))
					}
				}
			}
			return out
		},
	}
}

func TestSandboxSuite(t *testing.T) {
	quark, _ := requirements(t)
	sandboxtest.Run(t, suiteSandboxer(quark))
}

// TestTaskSuite: the task backends' suite on the forwarding backend to the
// stand-in, a busybox bundle as the guest's (the container's namespaces
// its own: the suite's bundles are made before a sandbox pid exists).
func TestTaskSuite(t *testing.T) {
	quark, _ := requirements(t)
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer: suiteSandboxer(quark),
		Workload: tasktest.Workload{
			Bundle: func(t *testing.T, bundle string) []*types.Mount {
				if err := guestvm.BusyboxBundle(filepath.Dir(bundle), filepath.Base(bundle), []string{"/bin/sh"}, nil); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			Args: tasktest.BusyboxArgs,
		},
		// the pid is the sandbox's: the process's host pid is found
		// through the pod's sandbox process
		EndProcess: func(t *testing.T, _, pod, _ string, pid uint32) {
			sb := sandboxOf(quark, pod)
			if len(sb) != 1 {
				t.Fatalf("sandbox processes of pod %s: %v", pod, sb)
			}
			host, err := hostPid(sb[0], pid)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// hostPid is the host pid of the process whose pid is pid in the PID
// namespace of the sandbox process sandbox (which may be in a namespace of
// its own below: NSpid lists its pid at each level, the host's first).
func hostPid(sandbox int, pid uint32) (int, error) {
	nspid := func(h int) []string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", h))
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
				return strings.Fields(rest)
			}
		}
		return nil
	}
	ppid := func(h int) int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h))
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 {
			return 0
		}
		p, _ := strconv.Atoi(f[1])
		return p
	}
	level := len(nspid(sandbox)) - 1
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		h, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns := nspid(h); len(ns) <= level || ns[level] != strconv.FormatUint(uint64(pid), 10) {
			continue
		}
		for a := h; a > 1; a = ppid(a) {
			if a == sandbox {
				return h, nil
			}
		}
	}
	return 0, fmt.Errorf("no process %d in the PID namespace of sandbox process %d", pid, sandbox)
}
