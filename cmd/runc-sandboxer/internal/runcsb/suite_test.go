package runcsb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// The conformance suites run with root, the real runc binary (MAGNETAR_RUNC,
// else _output/prefix/bin/runc, else PATH) and a static busybox (Debian's
// busybox-static) for the containers' programs.

// suiteCgroupParent holds the cgroups of the suites' containers.
const suiteCgroupParent = "/magnetar-suite"

// suiteHost returns runc and busybox, or skips t saying what is missing.
func suiteHost(t *testing.T) (runcBin, busybox string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, runc)")
	}
	if runcBin = tasktest.FindRunc("../../../.."); runcBin == "" {
		t.Skip("runc not found: set MAGNETAR_RUNC or run hack/install-tools.sh")
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fileExists(p) {
			busybox = p
			break
		}
	}
	if busybox == "" {
		t.Skip("busybox (static: Debian's busybox-static) not installed")
	}
	return runcBin, busybox
}

// suiteSandboxer is the runc sandboxer for the suites; pod makes the CRI
// configuration of its pods.
func suiteSandboxer(runcBin string, pod func(id string) *runtime.PodSandboxConfig) *sandboxtest.Sandboxer {
	return &sandboxtest.Sandboxer{
		Name: Name,
		New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
			cfg := DefaultConfig()
			cfg.Dir = env.Dir
			cfg.Runc.Binary = runcBin
			cfg.Runc.Root = filepath.Join(env.Dir, "runc-root")
			d, be, err := Sandboxer().Build(env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return d, be
		},
		Pod: func(t *testing.T, id string) *sandboxapi.ControllerCreateRequest {
			return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: "magnetar-runc", Options: sandboxtest.PodOptions(t, pod(id))}
		},
		KillPod: func(t *testing.T, _ *sandboxtest.Daemon, id string) {
			pids := findPodInits(id)
			if len(pids) != 1 {
				t.Fatalf("pod inits of %s: %v", id, pids)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
		Leftovers: func(t *testing.T, dir string) []string {
			return append(runcLeftovers(dir), podInitLeftovers()...)
		},
	}
}

// runcLeftovers lists runc's containers and our bundles under dir.
func runcLeftovers(dir string) []string {
	var out []string
	for _, sub := range []string{"runc-root", "bundles"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	return out
}

// podInitLeftovers lists the pod inits this test binary started that still
// run.
func podInitLeftovers() []string {
	self, _ := os.Executable()
	var out []string
	for _, p := range proc.Find(func(args []string) bool { return len(args) >= 2 && args[1] == podinit.Arg }) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); exe != self {
			continue
		}
		out = append(out, fmt.Sprintf("pod init %d of pod %s", p.PID, strings.Join(p.Args[2:], " ")))
	}
	return out
}

// sharedPIDPod is a host-network pod whose containers share a PID
// namespace: its init is a process of the pod's own.
func sharedPIDPod(string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_POD}},
	}}
}

// plainPod is a host-network pod without a process (a PID namespace per
// container, CRI's default): ipc and uts namespaces of its own.
func plainPod(string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER}},
	}}
}

func TestSandboxSuite(t *testing.T) {
	runcBin, _ := suiteHost(t)
	sandboxtest.Run(t, suiteSandboxer(runcBin, sharedPIDPod))
}

func TestSandboxSuitePlainPod(t *testing.T) {
	runcBin, _ := suiteHost(t)
	sb := suiteSandboxer(runcBin, plainPod)
	sb.KillPod = nil
	sb.Lacks = map[sandboxtest.Capability]string{sandboxtest.PodProcess: "a pod without a shared PID namespace has no process"}
	sandboxtest.Run(t, sb)
}

func TestTaskSuite(t *testing.T) {
	runcBin, busybox := suiteHost(t)
	t.Cleanup(func() { _ = cgroups.Delete(suiteCgroupParent) })
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer: suiteSandboxer(runcBin, plainPod),
		Workload:  busyboxWorkload(runcBin, busybox),
		Leftovers: func(t *testing.T, dir string) []string { return runcLeftovers(dir) },
	})
}

// busyboxWorkload runs the suite's programs with busybox sh, in a bundle
// made as containerd's CRI makes one (runc spec's defaults; the pod's
// namespaces named by /proc/<sandbox pid>/ns paths, the sandbox pid being 0
// for a pod without a process) and a read-only bind of an image holding
// busybox as the rootfs.
func busyboxWorkload(runcBin, busybox string) tasktest.Workload {
	return tasktest.Workload{
		Bundle: func(t *testing.T, bundle string) []*types.Mount {
			image := bundle + ".image"
			for _, d := range []string{"bin", "proc", "dev", "etc", "tmp", "sys"} {
				if err := os.MkdirAll(filepath.Join(image, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(busybox)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(image, "bin/busybox"), data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("busybox", filepath.Join(image, "bin/sh")); err != nil {
				t.Fatal(err)
			}
			// mountpoints of the pod's files in a read-only rootfs
			for _, f := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
				if err := os.WriteFile(filepath.Join(image, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command(runcBin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
				t.Fatalf("runc spec: %v %s", err, out)
			}
			var sp specs.Spec
			raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
			if err := json.Unmarshal(raw, &sp); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(bundle))
			sp.Linux.CgroupsPath = suiteCgroupParent + "/" + hex.EncodeToString(sum[:8])
			var ns []specs.LinuxNamespace
			for _, n := range sp.Linux.Namespaces {
				switch n.Type {
				case specs.NetworkNamespace: // host network
					continue
				case specs.IPCNamespace, specs.UTSNamespace:
					n.Path = "/proc/0/ns/" + string(n.Type)
				}
				ns = append(ns, n)
			}
			sp.Linux.Namespaces = ns
			raw, _ = json.Marshal(&sp)
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return []*types.Mount{{Type: "bind", Source: image, Options: []string{"rbind", "ro"}}}
		},
		Args: tasktest.BusyboxArgs,
	}
}
