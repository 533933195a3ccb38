package gvisorsb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/runsc"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/podfiles"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// driver creates pods.
type driver struct {
	env *daemon.Env
	cfg *Config
	// pause is the root containers' rootfs: a directory holding the pause
	// binary alone (see pauseRootfs).
	pause  string
	gofers *gofers
}

var _ sandbox.Driver = (*driver)(nil)

// podState is a pod's persisted, driver-private state. What the pod's
// runsc calls depend on (the binary, the global flags) is fixed when the
// pod is created: runsc requires every call on a sandbox to repeat the
// flags it was created with, whatever the configuration says later.
type podState struct {
	Dir         string            `json:"dir"`
	NetNS       string            `json:"netns,omitempty"`
	HostNetwork bool              `json:"host_network,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Cgroup      string            `json:"cgroup"`
	Shm         string            `json:"shm"`
	Hints       map[string]string `json:"hints,omitempty"`
	Runsc       string            `json:"runsc"`
	Flags       []string          `json:"flags"`
	Monitor     string            `json:"monitor"`
	// Pid and PidStart name the sandbox process (runsc-sandbox).
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pid_start,omitempty"`
}

// Paths below a pod's directory.
const (
	runscDir   = "runsc"     // the pod's runsc --root
	rootBundle = "root"      // the root container's bundle
	runscLog   = "runsc.log" // the root container's runsc log (the sandbox's too)
	shmDir     = "shm"       // the source of the pod's /dev/shm hint
)

type pod struct {
	exit.Latch
	id   string
	d    *driver
	life context.Context

	mu      sync.Mutex
	st      podState
	sandbox *proc.Watch // nil before Start, or after a restart that found none
}

var (
	_ sandbox.Instance        = (*pod)(nil)
	_ exit.Notifier           = (*pod)(nil) // the controller watches it without a goroutine
	_ sandbox.Describer       = (*pod)(nil)
	_ sandbox.MetricsReporter = (*pod)(nil)
)

// Create checks the pod's configuration and writes its files and the root
// container's bundle; it starts nothing.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (_ sandbox.Instance, retErr error) {
	cfg := s.Config
	nso := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for _, n := range []struct {
		field string
		mode  runtime.NamespaceMode
	}{{"pid", nso.GetPid()}, {"ipc", nso.GetIpc()}} {
		if n.mode == runtime.NamespaceMode_NODE {
			return nil, fmt.Errorf("options.linux.security_context.namespace_options.%s: the host's %s namespace: a gVisor pod has its own kernel, it cannot share the host's: %w", n.field, n.field, errdefs.ErrNotImplemented)
		}
	}
	pc, err := podfiles.Check(s.ID, s.NetNSPath, cfg, podfiles.Rules{Handler: "magnetar-gvisor"})
	if err != nil {
		return nil, err
	}
	st := podState{
		Dir:         s.Dir,
		NetNS:       s.NetNSPath,
		HostNetwork: pc.HostNetwork,
		Hostname:    pc.Hostname,
		Shm:         filepath.Join(s.Dir, shmDir),
		Runsc:       d.cfg.Runsc.Binary,
		Monitor:     d.cfg.Runsc.Monitor,
	}
	hints, err := podHints(cfg.GetAnnotations(), st.Shm)
	if err != nil {
		return nil, err
	}
	st.Hints = hints
	parent := cfg.GetLinux().GetCgroupParent()
	if parent == "" {
		parent = d.cfg.Pod.CgroupParent
	}
	st.Cgroup = cgroupPath(parent, s.ID)
	st.Flags = podFlags(d.cfg, st.HostNetwork)

	if err := podfiles.Write(s.Dir, st.Hostname, st.HostNetwork, cfg.GetDnsConfig()); err != nil {
		return nil, err
	}
	for _, dir := range []string{st.Shm, filepath.Join(s.Dir, rootBundle), filepath.Join(s.Dir, runscDir)} {
		if err := os.Mkdir(dir, 0o711); err != nil {
			return nil, err
		}
	}
	if err := bundle.WriteSpec(filepath.Join(s.Dir, rootBundle), rootSpec(s.ID, &st, d.pause, cfg)); err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"cgroup": st.Cgroup, "flags": st.Flags, "hints": hintNames(st.Hints)}).Debug("pod created")
	return d.newPod(s.ID, st), nil
}

// podFlags are the global runsc flags of a pod's every runsc call: the
// platform, the network, --oci-seccomp, then runsc.flags. runsc ignores
// the container's seccomp profile (linux.seccomp: containerd's
// RuntimeDefault, a Localhost profile) unless --oci-seccomp is given; with
// it the sentry applies the profile to the container's processes, as
// Kubernetes asks. runsc.flags come last: "--oci-seccomp=false" there
// turns it off (runsc takes a flag's last value).
func podFlags(cfg *Config, hostNetwork bool) []string {
	network := "sandbox"
	if hostNetwork {
		network = "host"
	}
	return append([]string{"--platform=" + cfg.Runsc.Platform, "--network=" + network, "--oci-seccomp"}, cfg.Runsc.Flags...)
}

// cgroupPath is the cgroupsPath of pod id's sandbox under parent:
// systemd's slice:prefix:name form when parent is a slice (runsc converts
// it), else parent/id.
func cgroupPath(parent, id string) string {
	if strings.HasSuffix(parent, ".slice") && !strings.Contains(parent, "/") {
		return parent + ":magnetar-gvisor:" + id
	}
	return filepath.Join(parent, id)
}

func (d *driver) newPod(id string, st podState) *pod {
	return &pod{id: id, d: d, st: st, life: d.env.Life}
}

// Recover finds a pod again after a restart: its sandbox process by pid
// and start time. One that is gone is reported exited.
func (d *driver) Recover(ctx context.Context, s *sandbox.State) (sandbox.Instance, error) {
	var st podState
	if err := json.Unmarshal(s.Driver, &st); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	p := d.newPod(s.ID, st)
	switch s.Phase {
	case sandbox.PhaseStopped:
		p.Set(0, time.Now())
		return p, nil
	case sandbox.PhaseCreated:
		return p, nil // nothing runs yet
	case sandbox.PhaseStarting:
		// the daemon died inside Start: the controller stops the pod
		// next, and Stop finds what that Start left from runsc's state
		// and the processes naming the pod's runsc root
		return p, nil
	}
	if st.Pid <= 0 {
		p.Set(sandbox.ExitCodeLost, time.Now())
		return p, nil
	}
	w := proc.Reopen(st.Pid, st.PidStart)
	p.watchSandbox(w)
	return p, nil
}

// cli is runsc for the pod.
func (p *pod) cli() *runsc.CLI {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &runsc.CLI{Binary: p.st.Runsc, Root: filepath.Join(p.st.Dir, runscDir), Flags: p.st.Flags}
}

// monitor learns the exits and statistics of the pod's containers.
// containers' logs are logFile (for Processes).
func (p *pod) monitor(logFile string) runsc.Monitor {
	cli := p.cli()
	if p.st.Monitor == "processes" {
		return runsc.Processes{CLI: cli, Log: logFile}
	}
	return runsc.Control{Socket: runsc.SocketPath(cli.Root, p.id)}
}

// Start creates and starts the pod's root container, which starts the
// sandbox (runsc-sandbox, the pod's kernel, and the root container's gofer)
// in the pod's network namespace and cgroup, and returns the task endpoint.
func (p *pod) Start(ctx context.Context) (_ sandbox.Endpoint, retErr error) {
	ep := sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.d.cfg.Pod.StartTimeout))
	defer cancel()
	p.mu.Lock()
	dir := p.st.Dir
	p.mu.Unlock()
	cli, logFile := p.cli(), filepath.Join(dir, runscLog)
	bundle := filepath.Join(dir, rootBundle)
	pidFile := filepath.Join(bundle, "pid")
	defer func() {
		if retErr != nil {
			p.destroy(context.WithoutCancel(ctx))
		}
	}()
	if err := cli.Create(ctx, logFile, p.id, bundle, pidFile); err != nil {
		return ep, fmt.Errorf("pod sandbox: %w", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return ep, fmt.Errorf("pod sandbox: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ep, fmt.Errorf("pod sandbox: pid file %q: %w", b, errdefs.ErrUnknown)
	}
	start, err := proc.StartTime(pid)
	if err != nil {
		return ep, fmt.Errorf("pod sandbox %d: %w", pid, err)
	}
	w, err := proc.Open(pid)
	if err != nil {
		return ep, fmt.Errorf("pod sandbox %d: %w", pid, err)
	}
	p.mu.Lock()
	p.st.Pid, p.st.PidStart = pid, start
	p.mu.Unlock()
	p.watchSandbox(w)
	p.d.gofers.adopt(cli.Root)
	if err := cli.Start(ctx, logFile, p.id, nil); err != nil {
		return ep, fmt.Errorf("pod sandbox: %w", err)
	}
	ep.Pid = uint32(pid)
	log.G(ctx).WithFields(log.Fields{"pid": pid, "cgroup": p.st.Cgroup}).Debug("pod sandbox started")
	return ep, nil
}

// watchSandbox ends the pod when its sandbox process exits.
func (p *pod) watchSandbox(w *proc.Watch) {
	p.mu.Lock()
	p.sandbox = w
	p.mu.Unlock()
	w.Notify(func() {
		code, known, _ := w.Status()
		if !known {
			code = sandbox.ExitCodeLost
		}
		log.G(p.life).WithFields(log.Fields{"sandbox_id": p.id, "status": code, "known": known}).Info("pod sandbox exited")
		p.Set(uint32(code), time.Now())
	})
}

// sandboxKillWait bounds the wait for a sandbox to exit once killed.
const sandboxKillWait = 5 * time.Second

// Stop ends the sandbox: the pause gets SIGTERM (with a timeout), then
// the sandbox is destroyed (runsc delete --force kills it and its gofers).
func (p *pod) Stop(ctx context.Context, timeout time.Duration) error {
	p.mu.Lock()
	w := p.sandbox
	p.mu.Unlock()
	if w != nil && timeout > 0 {
		_ = p.cli().Runc(filepath.Join(p.st.Dir, runscLog)).Kill(ctx, p.id, int(syscall.SIGTERM), nil)
		select {
		case <-w.Done():
		case <-time.After(timeout):
		case <-ctx.Done():
		}
	}
	if err := p.destroy(ctx); err != nil {
		return err
	}
	p.Set(0, time.Now())
	return nil
}

// destroy deletes the root container (and so the sandbox) from runsc and
// makes sure no process of the pod is left: the sandbox, the gofers, any
// runsc process naming the pod's root. Idempotent.
func (p *pod) destroy(ctx context.Context) error {
	p.mu.Lock()
	w, dir := p.sandbox, p.st.Dir
	p.mu.Unlock()
	cli := p.cli()
	if err := cli.DeleteForce(ctx, filepath.Join(dir, runscLog), p.id); err != nil && !notExist(err) {
		log.G(ctx).WithError(err).WithField("sandbox_id", p.id).Warn("runsc delete of the pod's root container")
	}
	if w != nil {
		select {
		case <-w.Done():
		default:
			_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
			select {
			case <-w.Done():
			case <-time.After(sandboxKillWait):
				return fmt.Errorf("pod sandbox %d did not exit after SIGKILL: %w", w.Pid(), errdefs.ErrUnavailable)
			}
		}
	}
	killNaming(ctx, cli.Root)
	// the gofers' empty network namespace, pinned under the root by
	// runsc and left for the caller to unmount
	if err := mount.UnmountAll(runsc.NullNetNS(cli.Root)); err != nil {
		return fmt.Errorf("pod %s: %w", p.id, err)
	}
	return nil
}

// notExist tells a runsc error about a container it does not know.
func notExist(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") || strings.Contains(msg, "no such file")
}

// rootArg is how runsc's own processes (sandbox, gofers, exec helpers)
// name their root on their command line.
func rootArg(root string) string { return "--root=" + root }

// killNaming kills the processes that name root as their runsc root: what
// is left of a pod whose sandbox died or whose Start was cut.
func killNaming(ctx context.Context, root string) {
	arg := rootArg(root)
	match := func(args []string) bool {
		return slices.Contains(args, arg) || slices.Contains(args, root) && slices.Contains(args, "--root")
	}
	for range 20 {
		left := proc.Find(match)
		if len(left) == 0 {
			return
		}
		for _, l := range left {
			log.G(ctx).WithFields(log.Fields{"pid": l.PID, "cmd": l.Line()}).Debug("killing a process of the pod's runsc")
			_ = syscall.Kill(l.PID, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Cleanup destroys the sandbox if still there and removes the pod's
// cgroup (runsc removes it when it destroys the sandbox; this covers a
// sandbox that died). The controller removes the pod's directory.
func (p *pod) Cleanup(ctx context.Context) error {
	if err := p.destroy(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	cg := p.st.Cgroup
	p.mu.Unlock()
	if err := cgroups.Delete(cg); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		log.G(ctx).WithError(err).WithField("cgroup", cg).Warn("removing the pod's cgroup")
	}
	return nil
}

func (p *pod) DriverState() (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(&p.st)
}

// Describe adds the pod's sandbox to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return map[string]string{
		"runsc_root":  filepath.Join(p.st.Dir, runscDir),
		"sandbox_pid": strconv.Itoa(p.st.Pid),
		"netns":       p.st.NetNS,
		"cgroup":      p.st.Cgroup,
		"runsc_flags": strings.Join(p.st.Flags, " "),
		"mount_hints": strings.Join(hintNames(p.st.Hints), ","),
	}
}

// Metrics are the pod's host cgroup's: the sandbox and its gofers, what
// the pod really costs the node.
func (p *pod) Metrics(ctx context.Context) (*types.Metric, error) {
	p.mu.Lock()
	path := p.st.Cgroup
	p.mu.Unlock()
	return cgroups.PodMetric(p.id, path)
}
