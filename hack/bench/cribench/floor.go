package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// floorHandler is the pseudo-handler of the bare runsc floor (-floor-runsc):
// the pod magnetar-gvisor runs, started by runsc alone, without containerd
// or a sandboxer. Each pod is the sandboxer's two containers: the root
// container running the pause (magnetar-podinit) from a read-only rootfs of
// its own, then a busybox `sleep 3600` joining it (runsc's CRI annotations),
// with the flags the sandboxer gives runsc (--platform=systrap
// --network=sandbox, a --root per pod) in a network namespace with a veth
// (made beforehand, untimed: CNI's part in the CRI path) and a cgroup under
// the bench's parent. RunPodSandbox is timed as the root container's
// `runsc create` + `runsc start`, CreateContainer and StartContainer as the
// other one's.
const floorHandler = "runsc"

// floor starts and removes the floor's pods.
type floor struct {
	runsc, busybox, pause string
	platform              string
	dir                   string // below WORK: one directory per pod
	cgroup                string
	runID                 string

	mu   sync.Mutex
	seq  int
	pods map[string]*floorPod
}

type floorPod struct {
	id, dir, netns, veth string
}

func (f *floor) root(p *floorPod) string { return filepath.Join(p.dir, "root") }

// runsc runs one runsc command of pod p.
func (f *floor) cmd(ctx context.Context, p *floorPod, args ...string) error {
	g := []string{"--root", f.root(p), "--log", filepath.Join(p.dir, "runsc.log"), "--log-format", "json",
		"--platform=" + f.platform, "--network=sandbox"}
	out, err := exec.CommandContext(ctx, f.runsc, append(g, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("runsc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ip runs an ip command.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prepare makes pod p's directory, network namespace and bundles (untimed).
func (f *floor) prepare(p *floorPod) error {
	if err := os.MkdirAll(p.dir, 0o711); err != nil {
		return err
	}
	n := strings.TrimPrefix(p.id, "floor-")
	if err := ip("netns", "add", p.netns); err != nil {
		return err
	}
	if err := ip("link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns); err != nil {
		return err
	}
	num, _ := strconv.Atoi(n[strings.LastIndexByte(n, '-')+1:])
	addr := fmt.Sprintf("10.251.%d.%d/16", (num>>8)&255, num&255|1)
	for _, a := range [][]string{{"-n", p.netns, "addr", "add", addr, "dev", "eth0"}, {"-n", p.netns, "link", "set", "eth0", "up"},
		{"-n", p.netns, "link", "set", "lo", "up"}, {"link", "set", p.veth, "up"}} {
		if err := ip(a...); err != nil {
			return err
		}
	}
	pause := filepath.Join(p.dir, "pause")
	image := filepath.Join(p.dir, "image")
	for _, d := range []string{pause, image, filepath.Join(image, "bin"), filepath.Join(image, "proc"), filepath.Join(image, "dev"), filepath.Join(image, "etc"), filepath.Join(image, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := copyExe(f.pause, filepath.Join(pause, "pause")); err != nil {
		return err
	}
	if err := copyExe(f.busybox, filepath.Join(image, "bin", "busybox")); err != nil {
		return err
	}
	if err := os.Symlink("busybox", filepath.Join(image, "bin", "sh")); err != nil {
		return err
	}
	ns := []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}
	root := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{"args": []string{"/pause", "__magnetar_pod_init", p.id}, "cwd": "/", "env": []string{"PATH=/"},
			"user": map[string]int{"uid": 65535, "gid": 65535}, "noNewPrivileges": true},
		"root":        map[string]any{"path": pause, "readonly": true},
		"hostname":    p.id,
		"mounts":      []map[string]any{{"destination": "/proc", "type": "proc", "source": "proc"}, {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}},
		"annotations": map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": p.id},
		"linux":       map[string]any{"namespaces": append(ns, map[string]string{"type": "network", "path": "/var/run/netns/" + p.netns}), "cgroupsPath": f.cgroup + "/" + p.id},
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"}
	app := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{"args": []string{"sleep", "3600"}, "cwd": "/", "env": []string{"PATH=/bin"},
			"capabilities": map[string][]string{"bounding": caps, "effective": caps, "permitted": caps}},
		"root":        map[string]any{"path": image},
		"hostname":    p.id,
		"mounts":      []map[string]any{{"destination": "/proc", "type": "proc", "source": "proc"}, {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}},
		"annotations": map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": p.id},
		"linux":       map[string]any{"namespaces": append(ns, map[string]string{"type": "network"}), "cgroupsPath": f.cgroup + "/" + p.id + "-sleep"},
	}
	for name, sp := range map[string]any{"root-bundle": root, "sleep-bundle": app} {
		if err := os.MkdirAll(filepath.Join(p.dir, name), 0o700); err != nil {
			return err
		}
		b, _ := json.Marshal(sp)
		if err := os.WriteFile(filepath.Join(p.dir, name, "config.json"), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func copyExe(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// start starts one floor pod; on error the podRef names it for remove.
func (f *floor) start(ctx context.Context, phase string) (podRef, startSample, error) {
	f.mu.Lock()
	f.seq++
	n := f.seq
	p := &floorPod{id: fmt.Sprintf("floor-%s-%d", phase, n), veth: fmt.Sprintf("mgfl%d", n), netns: fmt.Sprintf("mgbench-%s-%d", f.runID, n)}
	p.dir = filepath.Join(f.dir, p.id)
	f.pods[p.id] = p
	f.mu.Unlock()
	ref := podRef{Handler: floorHandler, Name: p.id, ID: p.id, Container: p.id + "-sleep"}
	var s startSample
	if err := f.prepare(p); err != nil {
		return ref, s, fmt.Errorf("floor pod %s: %w", p.id, err)
	}
	t0 := time.Now()
	if err := f.cmd(ctx, p, "create", "--bundle", filepath.Join(p.dir, "root-bundle"), "--pid-file", filepath.Join(p.dir, "sandbox.pid"), p.id); err != nil {
		return ref, s, err
	}
	if err := f.cmd(ctx, p, "start", p.id); err != nil {
		return ref, s, err
	}
	t1 := time.Now()
	if err := f.cmd(ctx, p, "create", "--bundle", filepath.Join(p.dir, "sleep-bundle"), ref.Container); err != nil {
		return ref, s, err
	}
	t2 := time.Now()
	if err := f.cmd(ctx, p, "start", ref.Container); err != nil {
		return ref, s, err
	}
	t3 := time.Now()
	return ref, startSample{Run: ms(t1.Sub(t0)), Create: ms(t2.Sub(t1)), Start: ms(t3.Sub(t2)), Total: ms(t3.Sub(t0))}, nil
}

// remove destroys a floor pod (its root container ends the sandbox) and
// what prepare made; it returns the time runsc took.
func (f *floor) remove(ctx context.Context, ref podRef) (float64, error) {
	f.mu.Lock()
	p := f.pods[ref.ID]
	delete(f.pods, ref.ID)
	f.mu.Unlock()
	if p == nil {
		return 0, nil
	}
	t0 := time.Now()
	err := f.cmd(ctx, p, "delete", "--force", ref.Container)
	if e := f.cmd(ctx, p, "delete", "--force", p.id); e != nil && err == nil {
		err = e
	}
	d := ms(time.Since(t0))
	_ = ip("link", "del", p.veth)
	_ = ip("netns", "del", p.netns)
	if e := os.RemoveAll(p.dir); e != nil && err == nil {
		err = e
	}
	return d, err
}

// running says which floor pods have their container running (runsc state).
func (f *floor) running(ctx context.Context) map[string]int {
	f.mu.Lock()
	pods := make([]*floorPod, 0, len(f.pods))
	for _, p := range f.pods {
		pods = append(pods, p)
	}
	f.mu.Unlock()
	out := map[string]int{}
	for _, p := range pods {
		b, err := exec.CommandContext(ctx, f.runsc, "--root", f.root(p), "state", p.id+"-sleep").Output()
		var st struct{ Status string }
		if err == nil && json.Unmarshal(b, &st) == nil && st.Status == "running" {
			out[p.id] = 1
		}
	}
	return out
}

// roots are the runsc roots of the live floor pods (their processes name
// them).
func (f *floor) roots() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.pods {
		out = append(out, f.root(p))
	}
	return out
}

// removeAll removes every floor pod left (end of run, interrupt).
func (f *floor) removeAll(ctx context.Context) (int, error) {
	f.mu.Lock()
	var refs []podRef
	for _, p := range f.pods {
		refs = append(refs, podRef{Handler: floorHandler, ID: p.id, Container: p.id + "-sleep"})
	}
	f.mu.Unlock()
	var first error
	for _, r := range refs {
		if _, err := f.remove(ctx, r); err != nil && first == nil {
			first = err
		}
	}
	_ = os.Remove(f.dir)
	return len(refs), first
}
