package taskfwd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Names inside a container's directory in the share.
const (
	rootfsDir  = "rootfs"
	mountsDir  = "mounts"
	configJSON = "config.json"
)

// shm is the destination whose bind mount becomes the guest's own /dev/shm:
// the VM is the pod, so its /dev/shm is the pod's (the agent accepts it as
// the one bind source outside the share).
const shm = "/dev/shm"

// ctrState is a container's persisted, backend-private state: what Recover
// and Delete need besides the task record.
type ctrState struct {
	// Dir is the container's directory in the share as the host sees it
	// (<share host>/<id>): config.json, rootfs/ and mounts/<n>.
	Dir string `json:"dir"`
	// Bundle is the same directory as the guest sees it, the bundle of the
	// guest's Task.Create.
	Bundle string `json:"bundle"`
	// HostBundle is containerd's bundle, which holds the bundle notes.
	HostBundle string `json:"host_bundle,omitempty"`
}

// BundleNote is the note the backend leaves in containerd's bundle (see
// shared/bundle): the container's directory in the share, for
// CleanupBundle.
const BundleNote = "magnetar-taskfwd.json"

type bundleNote struct {
	Dir string `json:"dir"`
}

// CleanupBundle is the forwarding backend's part of a shim-style `delete`
// (containerd lost the task connection): it unmounts and removes container
// id's directory in its pod's share, named by the note in containerd's
// bundle. Nothing of ours there is fine.
func CleanupBundle(bundleDir, id string) error {
	var n bundleNote
	ok, err := bundle.ReadNote(bundleDir, BundleNote, &n)
	if !ok {
		return err
	}
	if n.Dir != "" && filepath.IsAbs(n.Dir) && filepath.Base(n.Dir) == id {
		if err := mount.RemoveAll(n.Dir); err != nil {
			return err
		}
	}
	bundle.RemoveNotes(bundleDir, BundleNote)
	return nil
}

// newCtrState names the directory of container id in g's share.
func newCtrState(g Guest, id string) ctrState {
	host, guest := g.Share()
	return ctrState{Dir: filepath.Join(host, id), Bundle: path.Join(guest, id)}
}

// writeBundle fills st.Dir (which exists, empty) for r: the rootfs mounted
// at rootfs/, the bind mounts made (see bindMounts) and config.json
// rewritten to the guest's paths. On error, what it mounted is left for
// removeBundle.
func writeBundle(ctx context.Context, r *task.CreateRequest, g Guest, fw Forwarding, st ctrState) error {
	sp := r.Spec
	if err := mountRootfs(r, st); err != nil {
		return err
	}
	// a guest's read-only bind of a volume is inherited by the host mounts
	// below it (virtio-fs submounts are automounted with the flags of the
	// mount they appear under; Quark's are bound with the volume's): each is
	// bound again, writable if the host has it so, and the volume's own
	// bind in the share (made in the host's mount namespace) is not
	// recursive, so that it pins none of the host's mountpoints
	if slices.ContainsFunc(sp.Mounts, func(m specs.Mount) bool { return mount.NonRecursiveReadonly(&m) }) {
		table, err := mount.Self()
		if err != nil {
			return fmt.Errorf("read-only volumes: %w", err)
		}
		var whole []string
		if sp.Mounts, whole = mount.ReadonlySubmounts(sp.Mounts, table, true); len(whole) > 0 {
			log.G(ctx).WithField("volumes", whole).Warnf("more than %d host mounts below a read-only volume: read-only as a whole", mount.MaxSubmounts)
		}
	}
	if sp.Root == nil {
		sp.Root = &specs.Root{}
	}
	sp.Root.Path = rootfsDir
	if pf, ok := g.(PodFiler); ok {
		addPodFiles(sp, pf.PodFiles())
	}
	shareHost, shareGuest := g.Share()
	var err error
	if sp.Mounts, err = bindMounts(r.Bundle, sp.Mounts, fw, st, filepath.Clean(shareHost), shareGuest); err != nil {
		return err
	}
	return bundle.WriteSpec(st.Dir, sp)
}

// bindMounts makes the bind mounts of a container's spec for the guest and
// returns the mounts config.json keeps. For an agent, every bind whose
// source is outside the share is bind-mounted at mounts/<n> (n: its index
// in the spec) and its source rewritten to the guest's path, a source
// already in the share only rewritten, and a /dev/shm the guest's own.
// With fw.BindsInRootfs every bind is made at its destination inside the
// rootfs and dropped, but one below another mount the spec keeps or below
// another bind, made as for an agent (inRootfs).
func bindMounts(bundle string, ms []specs.Mount, fw Forwarding, st ctrState, shareHost, shareGuest string) ([]specs.Mount, error) {
	out := make([]specs.Mount, 0, len(ms))
	var made []specs.Mount // binds made in the rootfs
	for i := range ms {
		m := ms[i]
		if !fw.BindsInRootfs && m.Destination == shm && m.Type == "tmpfs" {
			// containerd's default: a private tmpfs; the pod's containers
			// share the pod's /dev/shm (as they share its IPC namespace)
			out = append(out, specs.Mount{Destination: shm, Type: "bind", Source: shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}})
			continue
		}
		if fw.PodShm != "" && m.Destination == shm && m.Type == "tmpfs" {
			m = specs.Mount{Destination: shm, Type: "bind", Source: fw.PodShm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}
		}
		if !mount.IsBind(&m) {
			out = append(out, m)
			continue
		}
		if !fw.BindsInRootfs && m.Destination == shm {
			m.Source = shm
			out = append(out, m)
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			// runc takes a relative source from the bundle
			src = filepath.Join(bundle, src)
		}
		src = filepath.Clean(src)
		if fw.BindsInRootfs && inRootfs(m.Destination, out, made, ms[i+1:]) {
			if err := bindInRootfs(src, filepath.Join(st.Dir, rootfsDir), &m); err != nil {
				return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
			}
			made = append(made, m)
			continue
		}
		if rel, ok := within(shareHost, src); ok {
			// already shared (a pod file, say): the guest's path for it
			m.Source = path.Join(shareGuest, filepath.ToSlash(rel))
			out = append(out, m)
			continue
		}
		n := strconv.Itoa(i)
		target := filepath.Join(st.Dir, mountsDir, n)
		if err := bindInto(src, target, bindMode{ro: hasOption(&m, "ro"), recursive: hasOption(&m, "rbind"), slave: receivesMounts(&m)}); err != nil {
			return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
		}
		m.Source = path.Join(st.Bundle, mountsDir, n)
		out = append(out, m)
	}
	return out, nil
}

// mountRootfs mounts the container's rootfs at st.Dir/rootfs: containerd's
// rootfs mounts, or, without any, a bind of the spec's root.path (relative
// to containerd's bundle), read-only if the root is.
func mountRootfs(r *task.CreateRequest, st ctrState) error {
	target := filepath.Join(st.Dir, rootfsDir)
	if len(r.Rootfs) > 0 {
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		if err := mount.All(r.Rootfs, target); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		return nil
	}
	root := r.Spec.Root
	if root == nil || root.Path == "" {
		return fmt.Errorf("rootfs: no rootfs mounts and no root.path in config.json: %w", errdefs.ErrInvalidArgument)
	}
	src := root.Path
	if !filepath.IsAbs(src) {
		src = filepath.Join(r.Bundle, src)
	}
	if err := bindInto(filepath.Clean(src), target, bindMode{ro: root.Readonly, recursive: true}); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

// addPodFiles adds a bind mount of each pod file whose destination the
// spec has no mount for, read-only with a read-only root, as the runc
// sandboxer does.
func addPodFiles(sp *specs.Spec, files map[string]string) {
	has := map[string]bool{}
	for _, m := range sp.Mounts {
		has[m.Destination] = true
	}
	opts := []string{"rbind", "rprivate"}
	if sp.Root != nil && sp.Root.Readonly {
		opts = append(opts, "ro")
	}
	dsts := make([]string, 0, len(files))
	for d := range files {
		dsts = append(dsts, d)
	}
	slices.Sort(dsts)
	for _, d := range dsts {
		if has[d] || files[d] == "" {
			continue
		}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: d, Type: "bind", Source: files[d], Options: slices.Clone(opts)})
	}
}

func hasOption(m *specs.Mount, o string) bool { return slices.Contains(m.Options, o) }

// within reports whether p is root or below it (both clean), and p's path
// relative to root.
func within(root, p string) (string, bool) {
	if p == root {
		return ".", true
	}
	if rest, ok := strings.CutPrefix(p, root+string(filepath.Separator)); ok {
		return rest, true
	}
	return "", false
}

// bindMode is how bindInto binds: read-only, recursively, and receiving
// the mounts made below its source afterwards (a slave) or not (private).
type bindMode struct{ ro, recursive, slave bool }

// propagation is the mount propagation of the bind.
func (b bindMode) propagation() uint64 {
	if b.slave {
		return unix.MS_SLAVE
	}
	return unix.MS_PRIVATE
}

// receivesMounts tells a volume whose container must see what the host
// mounts below its source later: propagation rslave (Kubernetes'
// HostToContainer) or rshared (Bidirectional; the other direction, from the
// guest to the host, cannot be: a guest's mounts are its own kernel's).
func receivesMounts(m *specs.Mount) bool {
	return hasOption(m, "rslave") || hasOption(m, "slave") || hasOption(m, "rshared") || hasOption(m, "shared")
}

// bindInto bind-mounts src at target, which it creates (a directory for a
// directory, an empty file otherwise): recursively with b.recursive,
// read-only with b.ro, a slave of src with b.slave (else private). The
// mount is made read-only and given its propagation before it is attached,
// so that a copy propagated to another mount namespace (virtiofsd's) is
// read-only too.
func bindInto(src, target string, b bindMode) error {
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bind source %q does not exist: %w", src, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return fmt.Errorf("bind source %q: %v: %w", src, err, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_CLOEXEC, 0o600); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("bind target: %w", err)
	}
	err = attachTree(src, target, b)
	if errors.Is(err, unix.ENOSYS) {
		err = bindLegacy(src, target, b)
	}
	if err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	return nil
}

// attachTree binds src onto target with the mount API: with b's
// propagation and, with b.ro, read-only (recursively).
func attachTree(src, target string, b bindMode) error {
	var attr uint64
	if b.ro {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	return attachTreeAt(src, unix.AT_FDCWD, target, attr, b.recursive, b.propagation())
}

// bindLegacy binds with mount(2) for kernels without the mount API: the
// read-only remount comes after the bind (and applies to its top mount).
func bindLegacy(src, target string, b bindMode) error {
	flags := uintptr(unix.MS_BIND)
	if b.recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, target, "", flags, ""); err != nil {
		return err
	}
	if err := unix.Mount("", target, "", uintptr(b.propagation())|unix.MS_REC, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return err
	}
	if b.ro {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return err
		}
	}
	return nil
}

// removeBundle unmounts everything below a container's directory in the
// share (rootfs, binds) and removes it. A missing directory is fine.
func removeBundle(dir string) error {
	if dir == "" {
		return nil
	}
	return mount.RemoveAll(dir)
}

// agentStdio is the stdio of a process as an agent gets it: for each
// stream the host has, the agentapi stdio path (under the guest's IORoot);
// no stderr with a terminal.
func agentStdio(g Guest, id, execID string, host stdio.Config) stdio.Config {
	root := agentapi.IORoot
	if r, ok := g.(IORooter); ok && r.IORoot() != "" {
		root = r.IORoot()
	}
	p := func(v, stream string) string {
		if v == "" {
			return ""
		}
		return path.Join(root, strings.TrimPrefix(agentapi.StdioPath(id, execID, stream), agentapi.IORoot))
	}
	gs := stdio.Config{Stdin: p(host.Stdin, agentapi.Stdin), Stdout: p(host.Stdout, agentapi.Stdout), Terminal: host.Terminal}
	if !host.Terminal {
		gs.Stderr = p(host.Stderr, agentapi.Stderr)
	}
	return gs
}
