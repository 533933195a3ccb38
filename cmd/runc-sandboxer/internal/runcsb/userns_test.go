package runcsb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/podinit"
)

// userNetNS makes a network namespace inside a new user namespace with the
// mapping, as containerd does for a pod with hostUsers: false, and holds
// it at path.
func userNetNS(t *testing.T, path string, hostID int) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := os.WriteFile(path, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), path, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })
}

// TestUserNamespacePod: a pod with its own user namespace (the one its
// network namespace belongs to) runs two containers in that user namespace;
// the first makes the pod's IPC and UTS namespaces (with the pod's
// hostname and IPC sysctl), the second joins them; nothing is left after.
func TestUserNamespacePod(t *testing.T) { userNamespacePod(t, runtime.NamespaceMode_CONTAINER) }

// TestUserNamespacePodSharedPID: the same with one PID namespace for the
// pod's containers (CRI's zero value): the pod init runs in a PID
// namespace owned by the pod's user namespace, which both containers join
// (runc joins the user namespace first, and then could not join a PID
// namespace of the host's user namespace).
func TestUserNamespacePodSharedPID(t *testing.T) { userNamespacePod(t, runtime.NamespaceMode_POD) }

func userNamespacePod(t *testing.T, pidMode runtime.NamespaceMode) {
	r := newRig(t)
	// the mapped root must reach the rootfs, and the pod init (this test
	// binary, run as the mapped root) its binary
	self, _ := os.Executable()
	for _, d := range []string{filepath.Dir(r.dir), r.dir, filepath.Dir(self), filepath.Dir(filepath.Dir(self))} {
		os.Chmod(d, 0o755)
	}
	ctx := context.Background()
	netns := filepath.Join(r.dir, "netns")
	userNetNS(t, netns, 300000)
	idmap := []*runtime.IDMapping{{ContainerId: 0, HostId: 300000, Length: 65536}}
	cfg := &runtime.PodSandboxConfig{Hostname: "upod", Linux: &runtime.LinuxPodSandboxConfig{
		Sysctls: map[string]string{"kernel.shmmni": "1234"},
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: pidMode,
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: idmap, Gids: idmap}}}}}
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "upod", NetnsPath: netns, Options: podAny(t, cfg)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "upod"}) })
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "upod"}); err != nil {
		t.Fatal(err)
	}
	report := "echo $(readlink /proc/self/ns/user) $(readlink /proc/self/ns/ipc) $(readlink /proc/self/ns/uts) $(hostname) $(cat /proc/sys/kernel/shmmni) $(cat /proc/self/uid_map) $(readlink /proc/self/ns/pid) $(tr '\\0' , < /proc/1/cmdline); exec sleep 60"
	outputs := map[string]string{}
	for _, id := range []string{"u1", "u2"} {
		b, rootfs := busyboxBundle(t, r, id, "upod", []string{"sh", "-c", report})
		var sp specs.Spec
		raw, _ := os.ReadFile(filepath.Join(b, "config.json"))
		json.Unmarshal(raw, &sp)
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/0/ns/user"},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/0/ns/net"})
		if pidMode == runtime.NamespaceMode_POD {
			// as containerd's CRI sends it: the sandbox pid's namespace
			for i := range sp.Linux.Namespaces {
				if sp.Linux.Namespaces[i].Type == specs.PIDNamespace {
					sp.Linux.Namespaces[i].Path = "/proc/0/ns/pid"
				}
			}
		}
		sp.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
		sp.Linux.GIDMappings = sp.Linux.UIDMappings
		sp.Hostname = ""
		raw, _ = json.Marshal(&sp)
		os.WriteFile(filepath.Join(b, "config.json"), raw, 0o600)
		fifo := filepath.Join(r.dir, id+".out")
		syscall.Mkfifo(fifo, 0o600)
		out, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		mounts := []*types.Mount{{Type: "bind", Source: rootfs, Options: []string{"rbind", "ro"}}}
		if _, err := r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b, Rootfs: mounts, Stdout: fifo}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if _, err := r.task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		syscall.SetNonblock(int(out.Fd()), false)
		buf := make([]byte, 256)
		n, _ := io.ReadAtLeast(out, buf, 20)
		outputs[id] = strings.TrimSpace(string(buf[:n]))
	}
	f1, f2 := strings.Fields(outputs["u1"]), strings.Fields(outputs["u2"])
	if len(f1) < 10 || len(f2) < 10 {
		t.Fatalf("container output: %q, %q", outputs["u1"], outputs["u2"])
	}
	host, _ := os.Readlink("/proc/self/ns/user")
	if f1[0] == host || f1[0] != f2[0] || f1[1] != f2[1] || f1[2] != f2[2] {
		t.Errorf("namespaces (user ipc uts): %v and %v; the host's user namespace is %s", f1[:3], f2[:3], host)
	}
	if f1[3] != "upod" || f1[4] != "1234" || strings.Join(f1[5:8], " ") != "0 300000 65536" {
		t.Errorf("hostname, shmmni, uid_map: %v, want upod 1234 0 300000 65536", f1[3:])
	}
	hostPID, _ := os.Readlink("/proc/self/ns/pid")
	switch {
	case f1[8] == hostPID || f2[8] == hostPID:
		t.Errorf("a container in the host's PID namespace: %s, %s", f1[8], f2[8])
	case pidMode == runtime.NamespaceMode_POD && (f1[8] != f2[8] || !strings.Contains(f1[9], podinit.Arg)):
		t.Errorf("shared PID: namespaces %s and %s, PID 1 %q; want one, PID 1 the pod init", f1[8], f2[8], f1[9])
	case pidMode == runtime.NamespaceMode_CONTAINER && f1[8] == f2[8]:
		t.Errorf("PID namespace per container: both in %s", f1[8])
	}
	if _, err := r.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "upod", TimeoutSecs: 1}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"u1", "u2"} {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.task.Wait(wctx, &taskapi.WaitRequest{ID: id})
		cancel()
		if _, err := r.task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "upod"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range r.leftovers(t) {
		if !strings.Contains(l, netns) {
			t.Errorf("left after shutdown: %s", l)
		}
	}
}
