package task

import (
	"context"
	"encoding/json"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// Backend runs the processes of one sandbox technology.
type Backend interface {
	// Create creates a container's init process without starting it. On error
	// it leaves nothing behind.
	Create(ctx context.Context, r *CreateRequest) (Container, error)
}

// Recoverer is implemented by backends whose containers outlive a daemon
// restart. Recover gets the record persisted for the container and its pod
// (nil when the service resolves no pods, or the pod is gone).
//
// r.Status is StatusCreating when the daemon died inside Create: r.Backend
// is then empty, and the service calls Delete on the container Recover
// returns, which must remove whatever that Create may have made (rootfs
// mount, runtime state, files), found from the request fields in r alone.
type Recoverer interface {
	Recover(ctx context.Context, r *Record, pod sandbox.Instance) (Container, error)
}

// ExecRecoverer is implemented by containers whose exec processes outlive a
// daemon restart (a host process, a process in a VM). Without it, an exec
// that was running when the daemon stopped is reported exited with
// sandbox.ExitCodeLost.
type ExecRecoverer interface {
	RecoverExec(ctx context.Context, r *ExecRecord) (Process, error)
}

// ProcessStater is implemented by processes with private state to persist
// for ExecRecoverer (a container's own State covers its init).
type ProcessStater interface {
	State() json.RawMessage
}

// CreateRequest is a validated Task.Create.
type CreateRequest struct {
	ID        string
	Namespace string
	Bundle    string
	// Spec is the bundle's config.json.
	Spec    *specs.Spec
	Rootfs  []*types.Mount
	Stdio   stdio.Config
	Options *anypb.Any
	// Pod is the running pod the container belongs to, resolved from the
	// spec's CRI annotation (sandbox.PodAnnotation) when the service was
	// made WithPods; nil otherwise. A backend type-asserts it to its own
	// instance type.
	Pod sandbox.Instance
}

// Process is one process: a container's init or an exec.
type Process interface {
	Pid() uint32
	Start(ctx context.Context) error
	// Kill signals the process (all: every process of the container).
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	// Exited is closed once the process has exited and its output is drained.
	Exited() <-chan struct{}
	ExitStatus() (code uint32, at time.Time)
	ResizePty(ctx context.Context, width, height uint32) error
	CloseStdin(ctx context.Context) error
	// Delete releases what the process holds. The init's Delete removes the
	// container. Idempotent.
	Delete(ctx context.Context) error
}

// Container is a container: its init process and what acts on all of it.
type Container interface {
	Process
	Exec(ctx context.Context, id string, spec *specs.Process, io stdio.Config) (Process, error)
	Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error)
	// Stats returns containerd's cgroup metrics as an Any.
	Stats(ctx context.Context) (*anypb.Any, error)
	Update(ctx context.Context, r *specs.LinuxResources, annotations map[string]string) error
	// State is the backend's private record, persisted for Recover.
	State() json.RawMessage
}

// Pauser is implemented by containers that can be frozen.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// OOMNotifier is implemented by containers that report OOM kills.
type OOMNotifier interface {
	OOM() <-chan struct{}
}

// OOMReporter is implemented by containers that report OOM kills by a
// call: f once per kill, on a goroutine f must not hold (kills before the
// call are reported to it). The task service prefers it to OOMNotifier:
// it costs no goroutine per container.
type OOMReporter interface {
	ReportOOM(f func())
}

// StatusCreating is the Status of a Record written before the backend's
// Create runs: found after a restart, it is a Create the daemon died in.
const StatusCreating = "creating"

// Record is what the server persists for each container.
type Record struct {
	ID        string       `json:"id"`
	Namespace string       `json:"namespace"`
	Bundle    string       `json:"bundle"`
	Pod       string       `json:"pod,omitempty"`
	Stdio     stdio.Config `json:"stdio"`
	Pid       uint32       `json:"pid"`
	// Status is StatusCreating, or the init's status: created, running,
	// paused, stopped.
	Status    string          `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	Exit      *ExitRecord     `json:"exit,omitempty"`
	Backend   json.RawMessage `json:"backend,omitempty"`
	// Execs are the container's exec processes, by exec id.
	Execs map[string]*ExecRecord `json:"execs,omitempty"`
}

// ExitRecord is a process's exit as containerd was told of it.
type ExitRecord struct {
	Code uint32    `json:"code"`
	At   time.Time `json:"at"`
}

// ExecRecord is what the server persists for an exec process.
type ExecRecord struct {
	ID        string          `json:"id"`
	Container string          `json:"container"`
	Stdio     stdio.Config    `json:"stdio"`
	Pid       uint32          `json:"pid"`
	Status    string          `json:"status"`
	Exit      *ExitRecord     `json:"exit,omitempty"`
	Backend   json.RawMessage `json:"backend,omitempty"`
}
