package sandbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Driver creates pod instances of one sandbox technology.
type Driver interface {
	// Create prepares a sandbox: directories, namespaces, configuration. It
	// starts no long-lived process, and it keeps everything it makes below
	// Spec.Dir (files, bind-mounted namespace files, tmpfs mounts), so that a
	// Create cut short by a daemon crash is rolled back by removing that
	// directory with every mount below it, which the controller does at its
	// next start. On error it leaves nothing behind.
	Create(ctx context.Context, s *Spec) (Instance, error)
	// Recover rebuilds an instance from its persisted state after a daemon
	// restart. An instance whose resources are gone is returned all the same
	// and reports its exit through Exited. st.Phase may be PhaseStarting: the
	// daemon died inside Start, and the controller calls Stop on the
	// instance next, which must then find and end whatever that Start had
	// begun (processes included) from the persisted state and what it can
	// discover on the host.
	Recover(ctx context.Context, st *State) (Instance, error)
}

// Instance is one pod sandbox. The controller serialises Stop, Cleanup and
// Update on one instance, but not Start: a Stop may arrive while Start runs,
// and then cancels Start's context before it calls Stop.
type Instance interface {
	// Start makes the sandbox ready and returns once its Task API endpoint
	// answers. When it fails, or its context ends, it leaves nothing
	// running.
	Start(ctx context.Context) (Endpoint, error)
	// Stop stops every process of the sandbox. The controller has stopped
	// the pod's containers before it calls Stop. With a zero timeout it
	// kills at once; otherwise it asks politely first and kills at the
	// deadline. Stop may be called on an instance that never started.
	Stop(ctx context.Context, timeout time.Duration) error
	// Exited is closed when the sandbox has exited; ExitStatus is then
	// valid. Embedding an exit.Latch provides both.
	Exited() <-chan struct{}
	ExitStatus() (code uint32, at time.Time)
	// Cleanup releases everything the sandbox holds. The controller has
	// deleted the pod's containers before it calls Cleanup, and removes
	// Spec.Dir (with every mount below it) after. Idempotent.
	Cleanup(ctx context.Context) error
	// DriverState is the driver's private state, persisted with the sandbox.
	DriverState() (json.RawMessage, error)
}

// Pods is how the task side finds the pod of a container: the controller
// implements it.
type Pods interface {
	// Pod returns the instance of sandbox id whatever its phase, and whether
	// it is running (started and not exited). The error wraps
	// errdefs.ErrNotFound for an unknown sandbox.
	Pod(id string) (inst Instance, running bool, err error)
}

// Containers is the task side as the controller sees it: what it must do
// with a pod's containers when the pod stops or goes, and what it reports of
// them. shared/task's Service implements it.
type Containers interface {
	// StopAll stops every running container of the pod: SIGTERM, then
	// SIGKILL at the deadline (at once with a zero timeout). It returns
	// once they have exited, or with an error naming those that did not.
	StopAll(ctx context.Context, podID string, timeout time.Duration) error
	// DeleteAll deletes every container of the pod (killing what still
	// runs) and releases what they hold.
	DeleteAll(ctx context.Context, podID string) error
	// PodStats sums the cgroup metrics of the pod's running containers
	// (containerd's v1 or v2 Metrics in an Any).
	PodStats(ctx context.Context, podID string) (*anypb.Any, error)
	// List names the pod's containers.
	List(podID string) []string
}

// Updater is implemented by instances that can apply a sandbox update.
// It returns the fields it applied; an error wrapping errdefs.ErrNotImplemented
// names the fields it could not apply.
type Updater interface {
	Update(ctx context.Context, u *Update) error
}

// MetricsReporter is implemented by instances that report pod metrics
// themselves (a VM: its host cgroup). Without it, the controller reports the
// sum of the pod's containers' metrics (Containers.PodStats).
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

// ExitCodeLost is the exit code of a sandbox (or container) whose end the
// daemon could not learn: it was lost in a daemon restart.
const ExitCodeLost = 255

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
	// PhaseStarting is persisted while Instance.Start runs: a record found
	// in it after a restart is a Start the daemon died in.
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running"
	PhaseStopped  Phase = "stopped"
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
