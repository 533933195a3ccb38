package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// label marks every pod and container of a chaos run.
const label = "magnetar-chaos"

// callTimeout bounds one CRI call: containerd may be restarting.
const callTimeout = 60 * time.Second

// cri is a CRI client of the harness's containerd.
type cri struct {
	rt      runtimeapi.RuntimeServiceClient
	conn    *grpc.ClientConn
	handler string
	logDir  string
	image   string
	// command is the workload container's; execCmd what exec runs in it
	// (exit code 0)
	command, execCmd []string
	mu               sync.Mutex
	seq              int
}

func dialCRI(work, handler string) (*cri, error) {
	conn, err := grpc.NewClient("unix://"+filepath.Join(work, "run", "containerd.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial CRI: %w", err)
	}
	c := &cri{rt: runtimeapi.NewRuntimeServiceClient(conn), conn: conn, handler: handler,
		logDir: filepath.Join(work, "tmp", "chaos-logs"), image: "docker.io/library/busybox:latest",
		command: []string{"sleep", "3600"}, execCmd: []string{"true"}}
	if wasmHandler(handler) {
		// the C test module of hack/wasm/images.sh: `sleep N`, `exit N`
		c.image, c.command, c.execCmd = wasmImage, []string{"/hello.wasm", "sleep", "3600"}, []string{"/hello.wasm", "exit", "0"}
	}
	return c, nil
}

// wasmImage is the wasm handlers' workload image (hack/wasm/images.sh).
const wasmImage = "localhost/magnetar/wasm-c:v1"

// wasmHandler: h runs WebAssembly modules inside its daemon (no process of
// a pod's own; a daemon's death ends its containers).
func wasmHandler(h string) bool { return strings.HasPrefix(h, "magnetar-wasm") }

func call(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// pod is one pod of the workload.
type pod struct {
	name, id, ctr string
	cfg           *runtimeapi.PodSandboxConfig
}

func (c *cri) podConfig(kind string) *runtimeapi.PodSandboxConfig {
	c.mu.Lock()
	c.seq++
	n := c.seq
	c.mu.Unlock()
	name := fmt.Sprintf("chaos-%s-%d", kind, n)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: fmt.Sprintf("%s-%d", name, time.Now().UnixNano())},
		Hostname:     name,
		LogDirectory: filepath.Join(c.logDir, name),
		Labels:       map[string]string{label: kind},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: *cgroupF},
	}
}

// runPod runs a pod with one container that sleeps (the handler's workload). What was made
// before an error is in the returned pod (to remove).
func (c *cri) runPod(kind string) (*pod, error) {
	cfg := c.podConfig(kind)
	p := &pod{name: cfg.Metadata.Name, cfg: cfg}
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return p, err
	}
	ctx, cancel := call(callTimeout)
	defer cancel()
	r, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: c.handler})
	if err != nil {
		return p, fmt.Errorf("RunPodSandbox %s: %w", p.name, err)
	}
	p.id = r.PodSandboxId
	ctx2, cancel2 := call(callTimeout)
	defer cancel2()
	cc, err := c.rt.CreateContainer(ctx2, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
			Image:    &runtimeapi.ImageSpec{Image: c.image},
			Command:  c.command,
			LogPath:  "sleep.log",
			Labels:   map[string]string{label: kind},
		}})
	if err != nil {
		return p, fmt.Errorf("CreateContainer in %s: %w", p.name, err)
	}
	p.ctr = cc.ContainerId
	ctx3, cancel3 := call(callTimeout)
	defer cancel3()
	if _, err := c.rt.StartContainer(ctx3, &runtimeapi.StartContainerRequest{ContainerId: p.ctr}); err != nil {
		return p, fmt.Errorf("StartContainer %s in %s: %w", short(p.ctr), p.name, err)
	}
	return p, nil
}

// exec runs execCmd in a container.
func (c *cri) exec(ctr string) error {
	ctx, cancel := call(30 * time.Second)
	defer cancel()
	r, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: c.execCmd, Timeout: 20})
	if err != nil {
		return fmt.Errorf("exec in %s: %w", short(ctr), err)
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("exec %s in %s: exit code %d: %s", strings.Join(c.execCmd, " "), short(ctr), r.ExitCode, r.Stderr)
	}
	return nil
}

func (c *cri) removeContainer(id string) error {
	ctx, cancel := call(callTimeout)
	defer cancel()
	if _, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		return fmt.Errorf("StopContainer %s: %w", short(id), err)
	}
	ctx2, cancel2 := call(callTimeout)
	defer cancel2()
	if _, err := c.rt.RemoveContainer(ctx2, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("RemoveContainer %s: %w", short(id), err)
	}
	return nil
}

// removePod stops and removes a pod; it returns the ids of its containers
// (removed with it).
func (c *cri) removePod(id string) ([]string, error) {
	ctrs, err := c.containers(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := call(callTimeout)
	defer cancel()
	if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return nil, fmt.Errorf("StopPodSandbox %s: %w", short(id), err)
	}
	ctx2, cancel2 := call(callTimeout)
	defer cancel2()
	if _, err := c.rt.RemovePodSandbox(ctx2, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return nil, fmt.Errorf("RemovePodSandbox %s: %w", short(id), err)
	}
	var ids []string
	for _, ct := range ctrs {
		ids = append(ids, ct.Id)
	}
	return ids, nil
}

func (c *cri) pods() ([]*runtimeapi.PodSandbox, error) {
	ctx, cancel := call(callTimeout)
	defer cancel()
	r, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("ListPodSandbox: %w", err)
	}
	return r.Items, nil
}

// containers lists the containers of pod (all when pod is "").
func (c *cri) containers(pod string) ([]*runtimeapi.Container, error) {
	ctx, cancel := call(callTimeout)
	defer cancel()
	r, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
	if err != nil {
		return nil, fmt.Errorf("ListContainers: %w", err)
	}
	return r.Containers, nil
}

func (c *cri) podStatus(id string) (*runtimeapi.PodSandboxStatus, error) {
	ctx, cancel := call(30 * time.Second)
	defer cancel()
	r, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return nil, fmt.Errorf("PodSandboxStatus %s: %w", short(id), err)
	}
	return r.Status, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
