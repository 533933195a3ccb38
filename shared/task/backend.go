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

	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// Backend runs the processes of one sandbox technology.
type Backend interface {
	// Create creates a container's init process without starting it. On error
	// it leaves nothing behind.
	Create(ctx context.Context, r *CreateRequest) (Container, error)
}

// Recoverer is implemented by backends whose containers outlive a daemon
// restart. Recover gets the record persisted at Create.
type Recoverer interface {
	Recover(ctx context.Context, r *Record) (Container, error)
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

// Record is what the server persists for each container.
type Record struct {
	ID        string          `json:"id"`
	Namespace string          `json:"namespace"`
	Bundle    string          `json:"bundle"`
	Stdio     stdio.Config    `json:"stdio"`
	Pid       uint32          `json:"pid"`
	Status    string          `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	Backend   json.RawMessage `json:"backend,omitempty"`
}
