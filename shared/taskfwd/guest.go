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

// Conn is one connection to a guest: its Task API. What else a guest's
// connection carries depends on the guest (see Forwarding):
// *agentclient.Client is a StreamConn and an EventConn.
type Conn interface {
	// Task is the guest's Task API (errors are errdefs errors).
	Task() taskapi.TTRPCTaskService
	// Done is closed when the connection ends.
	Done() <-chan struct{}
}

// StreamConn is a Conn that carries agentapi's stdio streams: what the
// backend relays containerd's stdio through, unless the guest takes
// Forwarding.StdioByPath.
type StreamConn interface {
	Conn
	// Stdout, Stderr and Stdin attach to a process's stdio in the guest
	// (execID "" for a container's init), flow-controlled; see agentapi's
	// stdio contract.
	Stdout(ctx context.Context, id, execID string) (io.ReadCloser, error)
	Stderr(ctx context.Context, id, execID string) (io.ReadCloser, error)
	Stdin(ctx context.Context, id, execID string) (io.WriteCloser, error)
}

// EventConn is a Conn that carries the guest's task event queue: where the
// backend learns the exits and OOM kills of the guest's processes, unless
// the guest takes Forwarding.WaitExits.
type EventConn interface {
	Conn
	// Events long-polls the guest's task events after afterSeq and calls
	// fn for each, in order, until ctx ends, the connection breaks or fn
	// fails; it returns the seq of the last event fn accepted.
	Events(ctx context.Context, afterSeq uint64, fn func(*agentapi.Event) error) (uint64, error)
}

// Forwarder is implemented by guests that are not a magnetar-agent (an
// application kernel such as Quark): what it returns says how the backend
// forwards to them. A guest without it is forwarded to as an agent: the
// zero Forwarding.
type Forwarder interface {
	Forwarding() Forwarding
}

// Forwarding is how the backend forwards a guest's containers; each field
// replaces one part of the agent's contract (see the package doc).
type Forwarding struct {
	// StdioByPath: the guest opens each process's stdio itself, by path,
	// from inside its share (its root). containerd's FIFOs are
	// bind-mounted into the container's directory in the share, as
	// <stream> for the init and <exec id>-<stream> for an exec (stream:
	// stdin, stdout, stderr), and the guest gets those paths as it sees
	// them; nothing is relayed or held in the keeper. Only FIFO or file
	// paths can be given so (no file:// or binary:// targets). Otherwise
	// the guest's Conn is a StreamConn and the backend relays.
	StdioByPath bool
	// WaitExits: the guest has no event queue; the backend keeps one
	// Task.Wait in flight for each process it forwards (again after a
	// reconnect) and ends the process with its answer. Otherwise the
	// guest's Conn is an EventConn, polled by one pump per guest.
	WaitExits bool
	// BindsInRootfs: the guest takes no bind mount in config.json. The
	// backend bind-mounts each at its destination inside the container's
	// rootfs (resolved inside the rootfs, as runc resolves it; what is
	// missing is created) and drops it from the spec, except a bind whose
	// destination lies below another mount the spec keeps (a tmpfs /dev
	// would hide it): that one is made as for an agent (mounts/<n>, its
	// source rewritten to the guest's path). Otherwise every bind is made
	// as for an agent.
	BindsInRootfs bool
	// PodShm is a host directory, the pod's /dev/shm (a tmpfs), that
	// replaces the private tmpfs containerd gives every container at
	// /dev/shm: a bind of it, made as any other bind, so that the pod's
	// containers share /dev/shm as they share its IPC namespace. "": the
	// tmpfs is kept (an agent's guest has a /dev/shm of its own instead).
	PodShm string
}

// forwarding is how g is forwarded to (an agent's without Forwarder).
func forwarding(g Guest) Forwarding {
	if f, ok := g.(Forwarder); ok {
		return f.Forwarding()
	}
	return Forwarding{}
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
