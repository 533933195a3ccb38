package sandbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Driver creates pod instances of one sandbox technology.
type Driver interface {
	// Create prepares a sandbox: directories, namespaces, configuration. It
	// starts no long-lived process. On error it leaves nothing behind.
	Create(ctx context.Context, s *Spec) (Instance, error)
	// Recover rebuilds an instance from its persisted state after a daemon
	// restart. An instance whose resources are gone is returned all the same
	// and reports its exit through Exited.
	Recover(ctx context.Context, st *State) (Instance, error)
}

// Instance is one pod sandbox.
type Instance interface {
	// Start makes the sandbox ready and returns once its Task API endpoint
	// answers.
	Start(ctx context.Context) (Endpoint, error)
	// Stop stops every process of the sandbox. With a zero timeout it kills
	// at once; otherwise it asks politely first and kills at the deadline.
	Stop(ctx context.Context, timeout time.Duration) error
	// Exited is closed when the sandbox has exited; ExitStatus is then valid.
	Exited() <-chan struct{}
	ExitStatus() ExitStatus
	// Cleanup releases everything the sandbox holds. Idempotent.
	Cleanup(ctx context.Context) error
	// DriverState is the driver's private state, persisted with the sandbox.
	DriverState() (json.RawMessage, error)
}

// Updater is implemented by instances that can apply a sandbox update.
// It returns the fields it applied; an error wrapping errdefs.ErrNotImplemented
// names the fields it could not apply.
type Updater interface {
	Update(ctx context.Context, u *Update) error
}

// MetricsReporter is implemented by instances that report pod metrics.
type MetricsReporter interface {
	Metrics(ctx context.Context) (*types.Metric, error)
}

// Pinger is implemented by instances that can check their own liveness.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Describer is implemented by instances that add details to a verbose Status.
type Describer interface {
	Describe(ctx context.Context) map[string]string
}

// Spec is what the controller knows about a sandbox at Create.
type Spec struct {
	ID          string
	Sandboxer   string
	NetNSPath   string
	Rootfs      []*types.Mount
	Annotations map[string]string
	Labels      map[string]string
	// Config is the CRI pod configuration; an empty config when the caller
	// sent none (e.g. `ctr sandbox run`).
	Config *runtime.PodSandboxConfig
	// OCISpec is set when the caller passed a runtime spec instead.
	OCISpec *specs.Spec
	// Dir is the sandbox's own state directory (created by the controller).
	Dir string
}

// Endpoint is where containerd reaches the sandbox's Task API.
type Endpoint struct {
	Address string `json:"address"`
	Version uint32 `json:"version"`
	Pid     uint32 `json:"pid"`
}

// ExitStatus is how a sandbox ended.
type ExitStatus struct {
	Code     uint32    `json:"code"`
	ExitedAt time.Time `json:"exited_at"`
}

// Update is a sandbox update request.
type Update struct {
	Fields      []string
	Labels      map[string]string
	Annotations map[string]string
	Resources   *runtime.LinuxContainerResources
}

// Phase is where a sandbox is in its life.
type Phase string

const (
	PhaseCreated Phase = "created"
	PhaseRunning Phase = "running"
	PhaseStopped Phase = "stopped"
)

// State is the persisted record of a sandbox: the truth for recovery.
type State struct {
	ID          string            `json:"id"`
	Sandboxer   string            `json:"sandboxer"`
	Phase       Phase             `json:"phase"`
	NetNSPath   string            `json:"netns_path,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Config is the PodSandboxConfig in protobuf wire form.
	Config    []byte          `json:"config,omitempty"`
	Dir       string          `json:"dir"`
	Endpoint  Endpoint        `json:"endpoint"`
	CreatedAt time.Time       `json:"created_at"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	Exit      *ExitStatus     `json:"exit,omitempty"`
	Driver    json.RawMessage `json:"driver,omitempty"`
}
