package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/criclient"
)

// cri is a thin CRI client bound to one containerd socket and one bench run.
type cri struct {
	*criclient.Client
	runID    string
	workload func(handler string) workload // the container a handler's pods run
	logDir   string                        // pods' log directories go below it
	cgroup   string                        // cgroup_parent of every pod
	pidMode  runtimeapi.NamespaceMode
	seq      int // pod name counter
}

// podRef is one pod the bench started.
type podRef struct {
	Handler   string
	Name      string
	ID        string
	Container string
}

// startSample is the latency of one pod + container start, in ms.
type startSample struct {
	Run, Create, Start, Total float64
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (c *cri) configs(handler, phase string) (*runtimeapi.PodSandboxConfig, *runtimeapi.ContainerConfig, error) {
	c.seq++
	name := fmt.Sprintf("bench-%s-%s-%d", phase, handler, c.seq)
	logDir := filepath.Join(c.logDir, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, nil, err
	}
	ns := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     c.pidMode,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	pod := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: name, Namespace: "bench", Uid: fmt.Sprintf("%s-%s", c.runID, name),
		},
		Hostname:     fmt.Sprintf("bench-%d", c.seq),
		LogDirectory: logDir,
		Labels:       map[string]string{criclient.LabelBench: "true", criclient.LabelRun: c.runID},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    c.cgroup,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}
	wl := c.workload(handler)
	ctr := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
		Image:    &runtimeapi.ImageSpec{Image: wl.Image},
		Command:  wl.Command,
		LogPath:  "sleep.log",
		Labels:   map[string]string{criclient.LabelBench: "true", criclient.LabelRun: c.runID},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns},
		},
	}
	return pod, ctr, nil
}

// startPod runs a pod on handler with its one container (workload) and times
// each CRI step. On error the returned podRef still names what was created so
// that the caller tears it down.
func (c *cri) startPod(ctx context.Context, handler, phase string, pod *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig) (podRef, startSample, error) {
	ref := podRef{Handler: handler, Name: pod.Metadata.Name}
	var s startSample
	t0 := time.Now()
	rctx, cancel := c.RPC(ctx)
	rp, err := c.Runtime.RunPodSandbox(rctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: handler})
	cancel()
	if err != nil {
		return ref, s, fmt.Errorf("RunPodSandbox %s on %s: %w", ref.Name, handler, err)
	}
	ref.ID = rp.PodSandboxId
	t1 := time.Now()
	rctx, cancel = c.RPC(ctx)
	cc, err := c.Runtime.CreateContainer(rctx, &runtimeapi.CreateContainerRequest{PodSandboxId: ref.ID, Config: ctr, SandboxConfig: pod})
	cancel()
	if err != nil {
		return ref, s, fmt.Errorf("CreateContainer in %s on %s: %w", ref.Name, handler, err)
	}
	ref.Container = cc.ContainerId
	t2 := time.Now()
	rctx, cancel = c.RPC(ctx)
	_, err = c.Runtime.StartContainer(rctx, &runtimeapi.StartContainerRequest{ContainerId: ref.Container})
	cancel()
	if err != nil {
		return ref, s, fmt.Errorf("StartContainer in %s on %s: %w", ref.Name, handler, err)
	}
	t3 := time.Now()
	s = startSample{Run: ms(t1.Sub(t0)), Create: ms(t2.Sub(t1)), Start: ms(t3.Sub(t2)), Total: ms(t3.Sub(t0))}
	return ref, s, nil
}

// removePod stops and removes one pod; it returns the time both took.
func (c *cri) removePod(ctx context.Context, id string) (float64, error) {
	t0 := time.Now()
	rctx, cancel := c.RPC(ctx)
	_, err := c.Runtime.StopPodSandbox(rctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("StopPodSandbox %s: %w", short(id), err)
	}
	rctx, cancel = c.RPC(ctx)
	_, err = c.Runtime.RemovePodSandbox(rctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("RemovePodSandbox %s: %w", short(id), err)
	}
	return ms(time.Since(t0)), nil
}

// listPods returns the ids of pods labelled with the given key=value.
func (c *cri) listPods(ctx context.Context, key, value string) ([]*runtimeapi.PodSandbox, error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	r, err := c.Runtime.ListPodSandbox(rctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{key: value}},
	})
	if err != nil {
		return nil, err
	}
	return r.Items, nil
}

// removeLabelled removes every pod carrying key=value; it returns how many.
func (c *cri) removeLabelled(ctx context.Context, key, value string) (int, error) {
	pods, err := c.listPods(ctx, key, value)
	if err != nil {
		return 0, err
	}
	var first error
	for _, p := range pods {
		if _, err := c.removePod(ctx, p.Id); err != nil && first == nil {
			first = err
		}
	}
	return len(pods), first
}

// runningContainers counts this run's containers in state RUNNING, per pod id.
func (c *cri) runningContainers(ctx context.Context) (map[string]int, error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	r, err := c.Runtime.ListContainers(rctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: map[string]string{criclient.LabelRun: c.runID},
		},
	})
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, ct := range r.Containers {
		n[ct.PodSandboxId]++
	}
	return n, nil
}

// containerPids returns the host pid of each running container of this run
// (from the verbose status info containerd's CRI returns).
func (c *cri) containerPids(ctx context.Context) ([]int, error) {
	rctx, cancel := c.RPC(ctx)
	r, err := c.Runtime.ListContainers(rctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{criclient.LabelRun: c.runID}},
	})
	cancel()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, ct := range r.Containers {
		rctx, cancel := c.RPC(ctx)
		st, err := c.Runtime.ContainerStatus(rctx, &runtimeapi.ContainerStatusRequest{ContainerId: ct.Id, Verbose: true})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ContainerStatus %s: %w", short(ct.Id), err)
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if raw, ok := st.Info["info"]; ok {
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				return nil, fmt.Errorf("ContainerStatus %s: verbose info: %w", short(ct.Id), err)
			}
		}
		if info.Pid > 0 {
			pids = append(pids, info.Pid)
		}
	}
	return pids, nil
}

// handlers lists the runtime handlers containerd's CRI knows.
func (c *cri) handlers(ctx context.Context) ([]string, error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	r, err := c.Runtime.Status(rctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return nil, err
	}
	var hs []string
	for _, h := range r.RuntimeHandlers {
		hs = append(hs, h.Name)
	}
	return hs, nil
}

func (c *cri) version(ctx context.Context) string {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	v, err := c.Runtime.Version(rctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "?"
	}
	return v.RuntimeName + " " + v.RuntimeVersion
}

// checkImage checks that image is in containerd's k8s.io namespace.
func (c *cri) checkImage(ctx context.Context, image string) error {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	r, err := c.Images.ImageStatus(rctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", image, err)
	}
	if r.Image == nil {
		return fmt.Errorf("image %s is not in containerd's k8s.io namespace (hack/containerd.sh start imports busybox, hack/wasm/images.sh import the wasm images)", image)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func atoiOr(s string, d int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return d
}
