package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/magnetar-runtime/magnetar/shared/task"
)

// sandboxService is the sandbox's Task API as Quark's ShimTask serves it in
// sandboxed mode, on top of shared/task's service: paths are the sandbox's
// view (resolved inside root, refused when they lead out of it), a Create's
// bundle is /<id>, Shutdown with no container left ends the sandbox, and
// Pause, Resume and Checkpoint are not implemented.
type sandboxService struct {
	*task.Service
	root string
	quit func()
}

var _ taskapi.TTRPCTaskService = (*sandboxService)(nil)

// refused logs and returns a request the stand-in refuses: loudly, for the
// tests that read its log.
func refused(ctx context.Context, op string, err error) error {
	log.G(ctx).WithError(err).Errorf("REFUSED %s: a path or request Quark would not take", op)
	return errgrpc.ToGRPC(err)
}

// inRoot is the host path of p, a path as the sandbox sees it: absolute,
// resolved below root without leaving it (no "..", no symlink out) and
// existing.
func (s *sandboxService) inRoot(what, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if !path.IsAbs(p) || path.Clean(p) != p {
		return "", fmt.Errorf("%s %q: not an absolute, clean path inside the sandbox root %s: %w", what, p, s.root, errdefs.ErrInvalidArgument)
	}
	rootFd, err := unix.Open(s.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFd)
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rootFd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
	switch {
	case errors.Is(err, unix.ENOENT):
		return "", fmt.Errorf("%s %q: no such file inside the sandbox root %s (a host path not mapped into the sandbox?): %w", what, p, s.root, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EXDEV):
		return "", fmt.Errorf("%s %q: leads out of the sandbox root %s: %w", what, p, s.root, errdefs.ErrInvalidArgument)
	case err != nil:
		return "", fmt.Errorf("%s %q in the sandbox root %s: %v: %w", what, p, s.root, err, errdefs.ErrInvalidArgument)
	}
	defer unix.Close(fd)
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// stdio maps the stdio paths of a request; each must be a FIFO, which
// Quark opens in the sandbox.
func (s *sandboxService) stdio(in, out, errp *string) error {
	for _, f := range []struct {
		what string
		p    *string
	}{{"stdin", in}, {"stdout", out}, {"stderr", errp}} {
		hp, err := s.inRoot(f.what, *f.p)
		if err != nil {
			return err
		}
		if hp != "" {
			if fi, err := os.Stat(hp); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
				return fmt.Errorf("%s %q: not a FIFO (%v): %w", f.what, *f.p, err, errdefs.ErrInvalidArgument)
			}
		}
		*f.p = hp
	}
	return nil
}

// Create creates a container whose bundle is /<id> in the sandbox (Quark
// in sandboxed mode ignores the bundle it is given and takes /<id>; the
// stand-in insists on it), its rootfs mounted there, no rootfs mounts.
func (s *sandboxService) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	if want := "/" + r.GetID(); r.GetBundle() != want {
		return nil, refused(ctx, "create", fmt.Errorf("bundle %q: a sandboxed Quark takes the bundle of container %s at %s inside its root: %w", r.GetBundle(), r.GetID(), want, errdefs.ErrInvalidArgument))
	}
	if len(r.GetRootfs()) > 0 {
		return nil, refused(ctx, "create", fmt.Errorf("rootfs: %d mounts given: their sources are host paths; the rootfs must be mounted at %s/rootfs before Create: %w", len(r.GetRootfs()), r.GetBundle(), errdefs.ErrInvalidArgument))
	}
	m := proto.Clone(r).(*taskapi.CreateTaskRequest)
	var err error
	if m.Bundle, err = s.inRoot("bundle", r.GetBundle()); err == nil {
		err = s.stdio(&m.Stdin, &m.Stdout, &m.Stderr)
	}
	if err != nil {
		return nil, refused(ctx, "create", err)
	}
	resp, err := s.Service.Create(ctx, m)
	if errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		// the container's spec: a path or namespace outside the sandbox
		log.G(ctx).WithError(err).Error("REFUSED create: a path or request Quark would not take")
	}
	return resp, err
}

// Exec adds an exec process, its stdio FIFOs inside the sandbox.
func (s *sandboxService) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	m := proto.Clone(r).(*taskapi.ExecProcessRequest)
	if err := s.stdio(&m.Stdin, &m.Stdout, &m.Stderr); err != nil {
		return nil, refused(ctx, "exec", err)
	}
	return s.Service.Exec(ctx, m)
}

// Shutdown ends the sandbox once no container is left (Quark's
// ShimTask::shutdown signals its exit); with containers it does nothing.
func (s *sandboxService) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	if len(s.Containers()) > 0 {
		return &emptypb.Empty{}, nil
	}
	log.G(ctx).Warn("Task.Shutdown with no container left: the sandbox ends, as Quark's does")
	s.quit()
	return &emptypb.Empty{}, nil
}

func notSupported(op string) error {
	return errgrpc.ToGRPC(fmt.Errorf("%s: Quark's sandbox task server does not implement it: %w", op, errdefs.ErrNotImplemented))
}

func (s *sandboxService) Pause(context.Context, *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return nil, notSupported("pause")
}

func (s *sandboxService) Resume(context.Context, *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return nil, notSupported("resume")
}

func (s *sandboxService) Checkpoint(context.Context, *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, notSupported("checkpoint")
}
