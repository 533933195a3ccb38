package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/criclient"
)

// cri is a CRI client of the harness containerd, bound to one run.
type cri struct {
	*criclient.Client
	handler string
	runID   string
	image   string
	cgroup  string // cgroup_parent of every pod
	logRoot string // pods' log directories go below it

	crictl, crictlCfg string
}

// check answers when the CRI service, the runtime handler and the image are
// there.
func (c *cri) check(ctx context.Context) error {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	st, err := c.Runtime.Status(rctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return fmt.Errorf("CRI status: %w", err)
	}
	found := false
	for _, h := range st.GetRuntimeHandlers() {
		found = found || h.GetName() == c.handler
	}
	if !found {
		return fmt.Errorf("runtime handler %s is not configured in the harness containerd", c.handler)
	}
	is, err := c.Images.ImageStatus(rctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: c.image}})
	if err != nil {
		return fmt.Errorf("image %s: %w", c.image, err)
	}
	if is.GetImage() == nil {
		return fmt.Errorf("image %s is not in the harness containerd (hack/images.sh, hack/containerd.sh start imports it)", c.image)
	}
	return nil
}

// podConfig is a pod named name: its own network namespace (a VM pod
// cannot use the host's), the harness's cgroup parent, our labels.
func (c *cri) podConfig(name string) (*runtimeapi.PodSandboxConfig, error) {
	logDir := filepath.Join(c.logRoot, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "vmmbench", Uid: c.runID + "-" + name},
		Hostname: name, LogDirectory: logDir,
		Labels: map[string]string{criclient.LabelBench: "vmm", criclient.LabelRun: c.runID},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    c.cgroup,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podNamespaces()},
		},
	}, nil
}

// ctrConfig is a busybox `sleep 3600`.
func (c *cri) ctrConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
		Image:    &runtimeapi.ImageSpec{Image: c.image},
		Command:  []string{"sleep", "3600"},
		LogPath:  "sleep.log",
		Labels:   map[string]string{criclient.LabelBench: "vmm", criclient.LabelRun: c.runID},
		// as the kubelet sends them for a pod without shareProcessNamespace
		// (CRI's zero value would share the pod's PID namespace: in the
		// guest, a pod init started at the first container's Create)
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: podNamespaces()}},
	}
}

// podNamespaces are the namespace options of the pod and its containers.
func podNamespaces() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
}

// runPod is RunPodSandbox on our handler.
func (c *cri) runPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	r, err := c.Runtime.RunPodSandbox(rctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: c.handler})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox %s: %w", cfg.GetMetadata().GetName(), err)
	}
	return r.GetPodSandboxId(), nil
}

// startContainer creates and starts the sleep container in pod.
func (c *cri) startContainer(ctx context.Context, pod string, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	cc, err := c.Runtime.CreateContainer(rctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c.ctrConfig(), SandboxConfig: cfg})
	if err != nil {
		return "", fmt.Errorf("CreateContainer in %s: %w", cfg.GetMetadata().GetName(), err)
	}
	if _, err := c.Runtime.StartContainer(rctx, &runtimeapi.StartContainerRequest{ContainerId: cc.GetContainerId()}); err != nil {
		return cc.GetContainerId(), fmt.Errorf("StartContainer in %s: %w", cfg.GetMetadata().GetName(), err)
	}
	return cc.GetContainerId(), nil
}

// waitRunning polls ContainerStatus until the container runs.
func (c *cri) waitRunning(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	for {
		r, err := c.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return fmt.Errorf("ContainerStatus %s: %w", id, err)
		}
		switch st := r.GetStatus().GetState(); st {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			return nil
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			return fmt.Errorf("container %s exited (%d: %s)", id, r.GetStatus().GetExitCode(), r.GetStatus().GetMessage())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s not running: %w", id, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// removePod stops and removes a pod, and times both.
func (c *cri) removePod(ctx context.Context, id string) (stop, remove time.Duration, err error) {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	t0 := time.Now()
	if _, err := c.Runtime.StopPodSandbox(rctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return 0, 0, fmt.Errorf("StopPodSandbox %s: %w", id, err)
	}
	t1 := time.Now()
	if _, err := c.Runtime.RemovePodSandbox(rctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return t1.Sub(t0), 0, fmt.Errorf("RemovePodSandbox %s: %w", id, err)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// removeAll removes every pod of this run (after an error, or at the end).
func (c *cri) removeAll(ctx context.Context) error {
	rctx, cancel := c.RPC(ctx)
	defer cancel()
	l, err := c.Runtime.ListPodSandbox(rctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{criclient.LabelRun: c.runID}}})
	if err != nil {
		return err
	}
	var errs []string
	for _, p := range l.GetItems() {
		if _, _, err := c.removePod(ctx, p.GetId()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// crictlRun runs crictl with the harness's config and times it.
func (c *cri) crictlRun(ctx context.Context, args ...string) (string, time.Time, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.crictl, append([]string{"-c", c.crictlCfg}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	t1 := time.Now()
	if err != nil {
		return "", t0, t1, fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), t0, t1, nil
}

// writeJSON writes v (a CRI config: crictl reads the same Go structs) to dir/name.
func writeJSON(dir, name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, b, 0o644)
}
