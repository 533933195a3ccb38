package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kase is one request and the gRPC codes it may get.
type kase struct {
	name string
	want []codes.Code
	run  func(ctx context.Context, d *daemon) error
}

var (
	okOnly   = []codes.Code{codes.OK}
	invalid  = []codes.Code{codes.InvalidArgument}
	notFound = []codes.Code{codes.NotFound}
	// refused is every clear answer to a request that is bad in context
	refused = []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.Unimplemented, codes.OutOfRange}
	// anyClear is refused plus success
	anyClear = append([]codes.Code{codes.OK}, refused...)
)

// hostileIDs break the id rules (sandbox.ValidateID) one way each.
func hostileIDs() []string {
	return []string{"", strings.Repeat("a", 77), strings.Repeat("x", 70000), "a/b", "/abs", "../../etc", "..", ".",
		"a\x00b", "a\nb", "-dash", ".hidden", "a b", "a;touch x", "a..b", "ü", "$(id)", `a\b`, "a\tb", "*", "a:b"}
}

const (
	procURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	specURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	podURL  = "type.googleapis.com/runtime.v1.PodSandboxConfig"
)

// podConfig is a valid host-network pod (nothing of the host's network
// changes), in the run's cgroup parent.
func (d *daemon) podConfig(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Uid: name, Namespace: "rpcfuzz"},
		Hostname: "rpcfuzz",
		Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: d.cgroupParent,
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}},
	}
}

func anyOf(url string, m proto.Message) *anypb.Any {
	b, _ := proto.Marshal(m)
	return &anypb.Any{TypeUrl: url, Value: b}
}

func (d *daemon) createReq(id string, cfg *runtime.PodSandboxConfig) *sandboxapi.ControllerCreateRequest {
	return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: d.h.sandboxer, Options: anyOf(podURL, cfg),
		Sandbox: &types.Sandbox{SandboxID: id, Sandboxer: d.h.sandboxer}}
}

// ctrlCalls are the Controller methods on one id.
func ctrlCalls(d *daemon) map[string]func(ctx context.Context, id string) error {
	sb := d.h.sandboxer
	return map[string]func(ctx context.Context, id string) error{
		"Create": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Create(ctx, d.createReq(id, d.podConfig("hostile")))
			return err
		},
		"Start": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Platform": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Stop": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Wait": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Status": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id, Sandboxer: sb, Verbose: true})
			return err
		},
		"Shutdown": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Metrics": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: id, Sandboxer: sb})
			return err
		},
		"Update": func(ctx context.Context, id string) error {
			_, err := d.ctrl.Update(ctx, &sandboxapi.ControllerUpdateRequest{SandboxID: id, Sandboxer: sb,
				Sandbox: &types.Sandbox{SandboxID: id}, Fields: []string{"resources"}})
			return err
		},
	}
}

// taskCalls are the Task API methods on one container id.
func taskCalls(d *daemon) map[string]func(ctx context.Context, id string) error {
	t := func() taskapi.TTRPCTaskService { return d.task }
	procSpec, _ := json.Marshal(specs.Process{Args: []string{"/bin/true"}, Cwd: "/"})
	return map[string]func(ctx context.Context, id string) error{
		"Create": func(ctx context.Context, id string) error {
			_, err := t().Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: d.bundle("fuzz-unknown-pod", nil)})
			return err
		},
		"Start": func(ctx context.Context, id string) error {
			_, err := t().Start(ctx, &taskapi.StartRequest{ID: id})
			return err
		},
		"Delete": func(ctx context.Context, id string) error {
			_, err := t().Delete(ctx, &taskapi.DeleteRequest{ID: id})
			return err
		},
		"Pids": func(ctx context.Context, id string) error {
			_, err := t().Pids(ctx, &taskapi.PidsRequest{ID: id})
			return err
		},
		"Pause": func(ctx context.Context, id string) error {
			_, err := t().Pause(ctx, &taskapi.PauseRequest{ID: id})
			return err
		},
		"Resume": func(ctx context.Context, id string) error {
			_, err := t().Resume(ctx, &taskapi.ResumeRequest{ID: id})
			return err
		},
		"Kill": func(ctx context.Context, id string) error {
			_, err := t().Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9, All: true})
			return err
		},
		"Exec": func(ctx context.Context, id string) error {
			_, err := t().Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "e1", Spec: &anypb.Any{TypeUrl: procURL, Value: procSpec}})
			return err
		},
		"ResizePty": func(ctx context.Context, id string) error {
			_, err := t().ResizePty(ctx, &taskapi.ResizePtyRequest{ID: id, Width: 80, Height: 24})
			return err
		},
		"CloseIO": func(ctx context.Context, id string) error {
			_, err := t().CloseIO(ctx, &taskapi.CloseIORequest{ID: id, Stdin: true})
			return err
		},
		"Update": func(ctx context.Context, id string) error {
			_, err := t().Update(ctx, &taskapi.UpdateTaskRequest{ID: id})
			return err
		},
		"Wait": func(ctx context.Context, id string) error {
			_, err := t().Wait(ctx, &taskapi.WaitRequest{ID: id})
			return err
		},
		"Stats": func(ctx context.Context, id string) error {
			_, err := t().Stats(ctx, &taskapi.StatsRequest{ID: id})
			return err
		},
		"Connect": func(ctx context.Context, id string) error {
			_, err := t().Connect(ctx, &taskapi.ConnectRequest{ID: id})
			return err
		},
		"State": func(ctx context.Context, id string) error {
			_, err := t().State(ctx, &taskapi.StateRequest{ID: id})
			return err
		},
		"Shutdown": func(ctx context.Context, id string) error {
			_, err := t().Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
			return err
		},
	}
}

// bundle writes a bundle below ROOT/fuzz for a container of pod (a spec
// edited by edit) and returns its path.
func (d *daemon) bundle(pod string, edit func(dir string, s *specs.Spec)) string {
	d.nbundle++
	dir := filepath.Join(d.fuzz, fmt.Sprintf("b%d", d.nbundle))
	_ = os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700)
	s := &specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"},
		Root:        &specs.Root{Path: "rootfs"},
		Annotations: map[string]string{"io.kubernetes.cri.sandbox-id": pod, "io.kubernetes.cri.container-type": "container"},
		Linux:       &specs.Linux{}}
	if edit != nil {
		edit(dir, s)
	}
	if s != nil {
		b, _ := json.Marshal(s)
		if _, err := os.Lstat(filepath.Join(dir, "config.json")); err != nil {
			_ = os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
		}
	}
	return dir
}

// escapes are host paths the hostile requests name, that must never
// appear.
func escapes(d *daemon) []string {
	return []string{"/tmp/" + d.tag + "-sysctl", "/etc/" + d.tag, "/tmp/" + d.tag + "-stdout", "/tmp/" + d.tag + "-hostname"}
}

// --- random requests ----------------------------------------------------------

// gen draws random requests from pools of good and hostile values.
type gen struct {
	r *rand.Rand
	d *daemon
}

func (g *gen) pick(n int) int { return g.r.IntN(n) }

func (g *gen) str(pool ...string) string { return pool[g.pick(len(pool))] }

// id returns an id and whether it is hostile: hostile, unknown, or one of
// known (ids the random cases created).
func (g *gen) id(known []string) (string, bool) {
	switch n := g.pick(10); {
	case n < 4:
		h := hostileIDs()
		return h[g.pick(len(h))], true
	case n < 7 || len(known) == 0:
		return fmt.Sprintf("fuzz-r%d", g.r.Uint32()), false
	default:
		return known[g.pick(len(known))], false
	}
}

func (g *gen) bytes() []byte {
	b := make([]byte, g.pick(64))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// anyPayload is a garbage or hostile google.protobuf.Any.
func (g *gen) anyPayload() *anypb.Any {
	switch g.pick(6) {
	case 0:
		return nil
	case 1:
		return &anypb.Any{TypeUrl: g.str("", "x", "type.googleapis.com/../../etc", podURL, specURL, procURL, strings.Repeat("u", 5000)), Value: g.bytes()}
	case 2:
		return &anypb.Any{TypeUrl: specURL, Value: []byte(g.str(`{"process":{"args":[]}}`, `{"root":{"path":"/"}}`, "null", "[]", `{"linux":{"namespaces":[{"type":"net","path":"/proc/1/ns/net"}]}}`))}
	case 3:
		return &anypb.Any{TypeUrl: procURL, Value: []byte(g.str(`{"args":[]}`, `{"args":["/bin/true"],"cwd":"../.."}`, "{", `{"args":["/bin/true"],"cwd":"/","user":{"uid":4294967295}}`))}
	case 4:
		return anyOf(podURL, g.podConfig())
	default:
		return &anypb.Any{TypeUrl: podURL, Value: g.bytes()}
	}
}

// podConfig is a random pod configuration, hostile in one field or none.
func (g *gen) podConfig() *runtime.PodSandboxConfig {
	c := g.d.podConfig(fmt.Sprintf("r%d", g.r.Uint32()))
	switch g.pick(9) {
	case 0:
		c.Hostname = g.str("../../etc/"+g.d.tag, strings.Repeat("h", 300), "a\nb", "/tmp/"+g.d.tag+"-hostname", "")
	case 1:
		c.Linux.CgroupParent = g.str("../../..", "/sys/fs/cgroup", "/../../"+g.d.tag, "relative", g.d.cgroupParent+"/../..")
	case 2:
		c.Linux.Sysctls = map[string]string{g.str("kernel/../../../../../tmp/"+g.d.tag+"-sysctl", "../"+g.d.tag, "kernel.", "net.ipv4.ip_forward"): "1"}
	case 3:
		c.DnsConfig = &runtime.DNSConfig{Servers: []string{g.str("1.1.1.1\nnameserver 6.6.6.6", "../../x", strings.Repeat("9", 4000))}, Searches: []string{"a\nb"}}
	case 4:
		c.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode(g.pick(8)), Pid: runtime.NamespaceMode(g.pick(8)),
			Ipc: runtime.NamespaceMode(g.pick(8)), UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode(g.pick(8))}}
	case 5:
		c.Metadata = nil
		c.Linux = nil
	case 6:
		c.LogDirectory = g.str("../../..", "/etc", "relative")
	case 7:
		c.Annotations = map[string]string{g.str("io.kubernetes.cri.sandbox-id", "x"): g.str("../x", "a\x00b")}
	}
	return c
}

// mounts is a random list of rootfs mounts, hostile or not.
func (g *gen) mounts() []*types.Mount {
	switch g.pick(7) {
	case 0:
		return nil
	case 1:
		// the host's / (not recursive: a container whose rootfs is an
		// rbind of / pins every mount below it, and a pod shut down
		// meanwhile cannot remove its directory (EBUSY): a known limit,
		// replayed by -seed 1796318036087220081 with rbind here)
		return []*types.Mount{{Type: "bind", Source: "/", Options: []string{"bind", "rw"}}}
	case 2:
		return []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/etc", "upperdir=" + g.d.outside + "/none/up", "workdir=" + g.d.outside + "/none/w"}}}
	case 3:
		return []*types.Mount{{Type: "tmpfs", Source: "tmpfs", Target: g.str("../../../..", "/etc", "a/../../.."), Options: []string{"size=1m"}}}
	case 4:
		return []*types.Mount{{Type: g.str("", "../x", "proc", "sysfs", strings.Repeat("t", 300)), Source: g.str("", "/dev/sda", "none"), Options: []string{g.str("", "x=y", "remount", "a\x00b")}}}
	case 5:
		return []*types.Mount{{Type: "bind", Source: "relative/src", Options: []string{"bind"}}, {Type: "bind", Source: "/proc", Options: []string{"rbind"}}}
	default:
		return []*types.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}
	}
}

func (g *gen) path() string {
	return g.str("", "relative", "/etc/"+g.d.tag, "/tmp/"+g.d.tag+"-stdout", g.d.outside+"/p", "/proc/self/ns/net", "/etc/passwd",
		"/run/netns/../../etc/passwd", "fifo:"+g.d.outside+"/f", "binary:///bin/sh?x=1", "file://relative", "/a\x00b", "/dev/null")
}
