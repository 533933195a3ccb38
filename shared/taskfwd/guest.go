package taskfwd

import (
	"context"
	"io"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// Guest is a pod whose containers run in another process that serves the
// Task API for them: a VM's agent, an application kernel. The pod instance a
// task.CreateRequest carries implements it (the backend type-asserts
// CreateRequest.Pod to Guest).
type Guest interface {
	// ID is the pod's sandbox id.
	ID() string
	// Conn returns the guest's connection, dialing it again when the last
	// one broke; ctx bounds the dial. It fails with errdefs.ErrUnavailable
	// once the guest is gone.
	Conn(ctx context.Context) (Conn, error)
	// Share is the directory shared with the guest, as the host sees it and
	// as the guest sees it. Container bundles go below it.
	Share() (host, guest string)
	// Exited is closed when the guest is gone (the VM ended): its processes
	// are lost.
	Exited() <-chan struct{}
}

// Conn is one connection to a guest. *agentclient.Client implements it.
type Conn interface {
	// Task is the guest's Task API (errors are errdefs errors).
	Task() taskapi.TTRPCTaskService
	// Stdout, Stderr and Stdin attach to a process's stdio in the guest
	// (execID "" for a container's init), flow-controlled; see agentapi's
	// stdio contract.
	Stdout(ctx context.Context, id, execID string) (io.ReadCloser, error)
	Stderr(ctx context.Context, id, execID string) (io.ReadCloser, error)
	Stdin(ctx context.Context, id, execID string) (io.WriteCloser, error)
	// Events long-polls the guest's task events after afterSeq and calls
	// fn for each, in order, until ctx ends, the connection breaks or fn
	// fails; it returns the seq of the last event fn accepted.
	Events(ctx context.Context, afterSeq uint64, fn func(*agentapi.Event) error) (uint64, error)
	// Done is closed when the connection ends.
	Done() <-chan struct{}
}

// PodFiler is implemented by guests that provide pod-level files for their
// containers (the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf):
// PodFiles maps a container destination to the host path of the file, which
// lies inside the share (Share's host side). A container whose spec has no
// mount for a destination gets a bind mount of the file, as the runc
// sandboxer gives its containers the pod's files.
type PodFiler interface {
	PodFiles() map[string]string
}

// IORooter is implemented by guests whose agent keeps its stdio FIFOs
// somewhere else than agentapi.IORoot: a magnetar-agent in -dev mode, run
// with -io <dir>. The stdio paths the backend sends are then
// agentapi.StdioPath's with IORoot in place of agentapi.IORoot.
type IORooter interface {
	IORoot() string
}
