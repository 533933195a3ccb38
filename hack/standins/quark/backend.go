package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/runcproc"
	"github.com/magnetar-runtime/magnetar/shared/store"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// backend runs the sandbox's containers with runc, where Quark runs them in
// its kernel.
type backend struct {
	root    string // the sandbox root, on the host
	state   string // the stand-in's private state
	runc    string
	hostPid int
	// cgroup is the sandbox's (cgroupfs path; "" for none): the containers'
	// go below it
	cgroup string
}

func newBackend(root, state, runcBin string, hostPid int, cgroup string) (*backend, error) {
	for _, d := range []string{filepath.Join(state, "runc"), filepath.Join(state, "ctr")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return &backend{root: root, state: state, runc: runcBin, hostPid: hostPid, cgroup: cgroup}, nil
}

// nsPathRE is how containerd names the sandbox's namespaces in a
// container's spec: /proc/<sandbox pid>/ns/<type>.
var nsPathRE = regexp.MustCompile(`^/proc/([0-9]+)/ns/(net|ipc|uts|pid)$`)

// within reports whether p (clean) is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}

// rewriteSpec checks a container's spec against the sandbox and makes it
// runc's: the rootfs inside the bundle, bind sources inside the sandbox
// root (the sandbox's view mapped to the host's), the sandbox's
// namespaces only, the cgroup below the sandbox's.
func (b *backend) rewriteSpec(sp *specs.Spec, bundle, id string) error {
	if sp.Root == nil || sp.Root.Path == "" {
		return fmt.Errorf("root.path: none: %w", errdefs.ErrInvalidArgument)
	}
	rootfs := sp.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	rootfs = filepath.Clean(rootfs)
	if !within(bundle, rootfs) {
		return fmt.Errorf("root.path %q: outside the container's bundle %s in the sandbox: %w", sp.Root.Path, bundle, errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return fmt.Errorf("root.path %q: the rootfs is not mounted in the bundle (%v): %w", sp.Root.Path, err, errdefs.ErrInvalidArgument)
	}
	sp.Root.Path = rootfs
	svc := &sandboxService{root: b.root}
	for i := range sp.Mounts {
		m := &sp.Mounts[i]
		if m.Type != "bind" && !contains(m.Options, "bind") && !contains(m.Options, "rbind") {
			continue
		}
		src, err := svc.inRoot(fmt.Sprintf("mounts[%d] (%s): source", i, m.Destination), m.Source)
		if err != nil {
			return err
		}
		m.Source = src
	}
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	var nss []specs.LinuxNamespace
	for _, ns := range sp.Linux.Namespaces {
		if ns.Path == "" {
			nss = append(nss, ns)
			continue
		}
		m := nsPathRE.FindStringSubmatch(ns.Path)
		if m == nil || m[1] != strconv.Itoa(b.hostPid) {
			return fmt.Errorf("linux.namespaces: %s %q: not the sandbox's (/proc/%d/ns/...), as containerd names them from the pid Controller.Start returned: %w",
				ns.Type, ns.Path, b.hostPid, errdefs.ErrInvalidArgument)
		}
		ns.Path = "/proc/1/ns/" + m[2] // the sandbox process, in its own PID namespace
		nss = append(nss, ns)
	}
	sp.Linux.Namespaces = nss
	if b.cgroup != "" {
		sp.Linux.CgroupsPath = filepath.Join(b.cgroup, id)
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Create runs `runc create` for a container of the sandbox.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	if err := b.rewriteSpec(r.Spec, r.Bundle, r.ID); err != nil {
		return nil, err
	}
	dir := filepath.Join(b.state, "ctr", r.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
		}
		return nil, err
	}
	c := &ctr{dir: dir, cgroup: r.Spec.Linux.CgroupsPath}
	c.Init = runcproc.New(r.ID, dir, &runc.Runc{Command: b.runc, Root: filepath.Join(b.state, "runc"),
		Log: filepath.Join(dir, "runc.log"), LogFormat: runc.JSON}, runcproc.Pidfd{})
	defer func() {
		if retErr != nil {
			c.Release(context.WithoutCancel(ctx))
			_ = os.RemoveAll(dir)
		}
	}()
	data, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	c.Namespace = r.Namespace
	if err := c.Init.Create(ctx, r.Stdio, false); err != nil {
		return nil, err
	}
	return c, nil
}

// ctr is a container of the sandbox; runc's calls are runcproc's.
type ctr struct {
	*runcproc.Init
	dir    string
	cgroup string
}

var _ task.Container = (*ctr)(nil)

// Delete removes the container (killing a created one first).
func (c *ctr) Delete(ctx context.Context) error {
	if err := c.Terminate(ctx); err != nil {
		return err
	}
	c.Release(ctx)
	return os.RemoveAll(c.dir)
}

// Stats are the container's cgroup's.
func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	cg, err := cgroups.Load(c.cgroup)
	if err != nil {
		return nil, err
	}
	return cg.Metrics()
}

// State is nothing to persist: the stand-in never restarts (its
// containers die with it).
func (c *ctr) State() json.RawMessage { return json.RawMessage("{}") }
