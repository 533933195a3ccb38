package gvisorsb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/gvisortest"
	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/runsc"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// The conformance suites and the integration tests run with root, the
// real runsc and a static busybox (gvisortest.Need).

// suiteCgroupParent holds the cgroups of the tests' pods and containers.
const suiteCgroupParent = "/magnetar-gvisor-suite"

// TestMain runs the tests, then removes what they built and their cgroup
// parent.
func TestMain(m *testing.M) {
	rc := m.Run()
	gvisortest.Cleanup()
	_ = cgroups.Delete(suiteCgroupParent)
	os.Exit(rc)
}

// testConfig is the configuration of the tests' daemons on dir.
func testConfig(h gvisortest.Host, dir string) *Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Runsc.Binary = h.Runsc
	cfg.Pod.PauseBinary = h.Pause
	cfg.Pod.CgroupParent = suiteCgroupParent
	return cfg
}

// suiteSandboxer is the gVisor sandboxer for the suites: host-network pods
// (no CNI here: runsc --network=host), monitor "control" or "processes".
func suiteSandboxer(h gvisortest.Host, monitor string) *sandboxtest.Sandboxer {
	return &sandboxtest.Sandboxer{
		Name: Name,
		New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
			cfg := testConfig(h, env.Dir)
			cfg.Runsc.Monitor = monitor
			d, be, err := Sandboxer().Build(env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return d, be
		},
		Pod: func(t *testing.T, id string) *sandboxapi.ControllerCreateRequest {
			return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: "magnetar-gvisor", Options: sandboxtest.PodOptions(t, hostNetworkPod())}
		},
		KillPod: func(t *testing.T, d *sandboxtest.Daemon, id string) {
			pids := sandboxPids(podRoot(d.Dir, id))
			if len(pids) != 1 {
				t.Fatalf("sandbox processes of %s: %v", id, pids)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
		Leftovers: func(t *testing.T, dir string) []string { return leftovers(dir, true) },
	}
}

// hostNetworkPod is a pod in the host's network namespace.
func hostNetworkPod() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			Network: runtime.NamespaceMode_NODE}},
	}}
}

// podRoot is the runsc root of pod id of a daemon on dir.
func podRoot(dir, id string) string { return filepath.Join(dir, "sandboxes", id, runscDir) }

// sandboxPids are the live runsc-sandbox processes of the runsc root.
func sandboxPids(root string) []int {
	var out []int
	for _, p := range proc.Find(func(args []string) bool { return args[0] == "runsc-sandbox" && slices.Contains(args, rootArg(root)) }) {
		out = append(out, p.PID)
	}
	return out
}

// leftovers lists what is left of a daemon on dir: runsc processes naming
// it (without pods: those of our containers, not the pods' own), mounts
// below it, our container directories and, with pods, cgroups below the
// tests' parent.
func leftovers(dir string, pods bool) []string {
	var out []string
	for _, p := range proc.Find(func(args []string) bool {
		under := dir + "/"
		if !pods {
			under = filepath.Join(dir, containersDir) + "/"
		}
		return strings.HasPrefix(args[0], "runsc") && slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, under) })
	}) {
		out = append(out, fmt.Sprintf("process %d: %s", p.PID, p.Line()))
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 || !pods && f[4] == runsc.NullNetNS(filepath.Dir(f[4])) && filepath.Base(filepath.Dir(f[4])) == runscDir {
				continue // a running pod's own (without pods: its containers' alone)
			}
			if strings.HasPrefix(f[4], dir+"/") {
				out = append(out, "mount "+f[4])
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, containersDir))
	for _, e := range ents {
		out = append(out, containersDir+"/"+e.Name())
	}
	if pods {
		for _, m := range []string{"memory", "cpu", "pids", "unified", ""} {
			sub, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", m, suiteCgroupParent))
			for _, e := range sub {
				if e.IsDir() {
					out = append(out, "cgroup "+filepath.Join(m, suiteCgroupParent, e.Name()))
				}
			}
		}
	}
	return out
}

func TestSandboxSuite(t *testing.T) {
	h := gvisortest.Need(t)
	sandboxtest.Run(t, suiteSandboxer(h, "control"))
}

func TestTaskSuite(t *testing.T) {
	h := gvisortest.Need(t)
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer:  suiteSandboxer(h, "control"),
		Workload:   busyboxWorkload(h.Busybox),
		Leftovers:  func(t *testing.T, dir string) []string { return leftovers(dir, false) },
		EndProcess: endProcess(h),
	})
}

// The task suite again with the monitor of processes (runsc wait, runsc
// events), the other implementation of runsc.Monitor.
func TestTaskSuiteMonitorProcesses(t *testing.T) {
	h := gvisortest.Need(t)
	if testing.Short() {
		t.Skip("-short: the control monitor's run covers the backend")
	}
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer:  suiteSandboxer(h, "processes"),
		Workload:   busyboxWorkload(h.Busybox),
		Leftovers:  func(t *testing.T, dir string) []string { return leftovers(dir, false) },
		EndProcess: endProcess(h),
	})
}

// busyboxWorkload runs the suite's programs with busybox sh, in a bundle
// made as containerd's CRI makes one for a container of a pod (the
// container's own cgroup under the tests' parent) and a bind of an image
// holding busybox as the rootfs: writable, as containerd's overlay is (runsc
// keeps the rootfs overlay's file store in the rootfs itself, its default
// --overlay2=root:self, which a read-only mount refuses).
func busyboxWorkload(busybox string) tasktest.Workload {
	return tasktest.Workload{
		Bundle: func(t *testing.T, bundle string) []*types.Mount {
			image := bundle + ".image"
			gvisortest.WriteImage(t, image, busybox)
			sum := sha256.Sum256([]byte(bundle))
			sp := gvisortest.ContainerSpec("", suiteCgroupParent+"/"+hex.EncodeToString(sum[:8]))
			raw, _ := json.Marshal(sp)
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return []*types.Mount{{Type: "bind", Source: image, Options: []string{"rbind"}}}
		},
		Args: func(p tasktest.Program) []string {
			switch p.Kind {
			case tasktest.Print:
				return []string{"/bin/sh", "-c", fmt.Sprintf("echo %s; echo %s >&2; exit %d", p.Stdout, p.Stderr, p.Code)}
			case tasktest.Exit:
				return []string{"/bin/sh", "-c", fmt.Sprintf("exit %d", p.Code)}
			case tasktest.Sleep:
				return []string{"/bin/busybox", "sleep", "3600"}
			case tasktest.Cat:
				return []string{"/bin/busybox", "cat"}
			}
			return []string{"/no/such/program"}
		},
	}
}

// endProcess ends a container in its sandbox while no daemon runs: the pid
// a record holds is the sandbox's, so `runsc kill` of the container, with
// the pod's root and flags.
func endProcess(h gvisortest.Host) func(t *testing.T, state, pod, id string, pid uint32) {
	return func(t *testing.T, state, pod, id string, _ uint32) {
		cli := &runsc.CLI{Binary: h.Runsc, Root: podRoot(state, pod), Flags: []string{"--platform=systrap", "--network=host"}}
		if err := cli.Runc(filepath.Join(state, "end.log")).Kill(context.Background(), id, int(syscall.SIGKILL), nil); err != nil {
			t.Fatalf("runsc kill %s: %v", id, err)
		}
	}
}
