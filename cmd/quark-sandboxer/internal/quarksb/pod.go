package quarksb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/podfiles"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// Names in a pod's directories.
const (
	// bundleDir is Quark's sandbox bundle (its -r) in the pod's state
	// directory: config.json, rootfs/, and the root of the sandbox, where
	// each container's bundle is <bundleDir>/<id> (taskfwd's share).
	bundleDir = "sandbox"
	// podFilesDir holds the pod's /etc files in the bundle; a container id
	// cannot start with '.', so it never collides.
	podFilesDir = ".pod"
	// shmDir is the pod's /dev/shm in its state directory, of shmSize
	// bytes (containerd's size for a container's own)
	shmDir         = "shm"
	shmSize        = 64 << 20
	taskSocketName = "task.sock"
	pidFileName    = "quark.pid"
	outputName     = "quark.out"
)

// killWait bounds the wait for a SIGKILLed sandbox process.
const killWait = 10 * time.Second

// driver creates Quark pods.
type driver struct {
	env *daemon.Env
	cfg *Config
}

var _ sandbox.Driver = (*driver)(nil)

// podState is a pod's persisted, driver-private state.
type podState struct {
	// Dir is the sandbox's state directory; Quark's bundle is
	// Dir/sandbox.
	Dir string `json:"dir"`
	// RunDir holds the task socket, pid file and Quark's output.
	RunDir      string `json:"run_dir"`
	NetNS       string `json:"netns,omitempty"`
	HostNetwork bool   `json:"host_network,omitempty"`
	Hostname    string `json:"hostname"`
	// Cgroup is the pod's cgroup (cgroups path): Quark's sandbox process
	// is moved into it (the stand-in nests its containers below).
	Cgroup string `json:"cgroup"`
	// Shm is the pod's /dev/shm, a tmpfs below Dir bound into every
	// container (taskfwd.Forwarding.PodShm); "" in the state of an older
	// daemon.
	Shm string `json:"shm,omitempty"`
	// Sandbox is Quark's sandbox process, once started.
	Sandbox hostproc.ID `json:"sandbox,omitzero"`
}

// pod is one Quark sandbox: the taskfwd.Guest its containers run in.
type pod struct {
	exit.Latch
	id   string
	d    *driver
	life context.Context

	mu    sync.Mutex
	st    podState
	proc  *hostproc.Process // the sandbox process; nil until started
	stage string
	// stopping is set once Stop or Cleanup ends the sandbox on purpose.
	stopping bool

	conn taskfwd.Redial[*conn]
}

var (
	_ sandbox.Instance        = (*pod)(nil)
	_ exit.Notifier           = (*pod)(nil) // the controller watches it without a goroutine
	_ sandbox.MetricsReporter = (*pod)(nil)
	_ sandbox.Describer       = (*pod)(nil)
	_ taskfwd.Guest           = (*pod)(nil)
	_ taskfwd.PodFiler        = (*pod)(nil)
	_ taskfwd.Forwarder       = (*pod)(nil)
)

// runDirOf is the run directory of sandbox id.
func (d *driver) runDirOf(id string) string {
	return config.PodRunDir(d.cfg.RunDir, id)
}

// Create checks the pod and writes Quark's bundle; it starts nothing.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
	cfg := s.Config
	pc, err := podfiles.Check(s.ID, s.NetNSPath, cfg, podfiles.Rules{Handler: Handler, OwnKernel: "a Quark pod runs on its own kernel and"})
	if err != nil {
		return nil, err
	}
	hostNet, hostname := pc.HostNetwork, pc.Hostname
	if s.NetNSPath != "" && hostNet {
		return nil, fmt.Errorf("netns_path %q: given for a host-network pod: %w", s.NetNSPath, errdefs.ErrInvalidArgument)
	}
	st := podState{Dir: s.Dir, RunDir: d.runDirOf(s.ID), NetNS: s.NetNSPath, HostNetwork: hostNet, Hostname: hostname,
		Cgroup: cgroups.PodPath(Handler, cfg.GetLinux().GetCgroupParent(), s.ID)}
	if _, err := cgroups.ResolvePath(st.Cgroup); err != nil {
		return nil, fmt.Errorf("options.linux.cgroup_parent %q: %w", cfg.GetLinux().GetCgroupParent(), err)
	}
	root := filepath.Join(s.Dir, bundleDir)
	// the sandbox's root path and its /dev, as Kuasar makes them
	if err := os.MkdirAll(filepath.Join(root, "rootfs", "dev"), 0o755); err != nil {
		return nil, err
	}
	files := filepath.Join(root, podFilesDir)
	if err := os.MkdirAll(files, 0o711); err != nil {
		return nil, err
	}
	if err := podfiles.Write(files, hostname, hostNet, cfg.GetDnsConfig()); err != nil {
		return nil, err
	}
	if err := bundle.WriteSpec(root, sandboxSpec(cfg, s.NetNSPath, hostname, st.Cgroup)); err != nil {
		return nil, err
	}
	// the pod's /dev/shm, shared by its containers as its IPC namespace
	// is (the controller unmounts it with the state directory); last, so
	// that no failure comes after it
	st.Shm = filepath.Join(s.Dir, shmDir)
	if err := os.Mkdir(st.Shm, 0o700); err != nil {
		return nil, err
	}
	if err := unix.Mount("shm", st.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size="+strconv.Itoa(shmSize)); err != nil {
		return nil, fmt.Errorf("the pod's /dev/shm: %w", err)
	}
	log.G(ctx).WithFields(log.Fields{"bundle": root, "cgroup": st.Cgroup}).Debug("pod created")
	return d.newPod(s.ID, st), nil
}

func (d *driver) newPod(id string, st podState) *pod {
	return &pod{id: id, d: d, st: st, life: d.env.Life, stage: "created"}
}

// Recover finds a pod again after a daemon restart: its sandbox process by
// pid and start time. One that died meanwhile is reported exited.
func (d *driver) Recover(ctx context.Context, s *sandbox.State) (sandbox.Instance, error) {
	var st podState
	if err := json.Unmarshal(s.Driver, &st); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	if len(s.Config) > 0 {
		if err := proto.Unmarshal(s.Config, &runtime.PodSandboxConfig{}); err != nil {
			return nil, fmt.Errorf("pod config: %w", err)
		}
	}
	p := d.newPod(s.ID, st)
	switch s.Phase {
	case sandbox.PhaseStopped:
		p.Set(0, time.Now())
		return p, nil
	case sandbox.PhaseCreated:
		return p, nil
	}
	if st.Sandbox.Pid == 0 {
		// a Start cut before its sandbox process was recorded: Stop
		// finds what it left
		p.stage = "start interrupted"
		return p, nil
	}
	sp := hostproc.Recover("quark", st.Sandbox)
	if !sp.Running() {
		log.G(ctx).WithFields(log.Fields{"sandbox_id": s.ID, "pid": st.Sandbox.Pid}).Warn("the Quark sandbox process is gone: reporting the pod exited")
		p.Set(sandbox.ExitCodeLost, time.Now())
		return p, nil
	}
	p.proc, p.stage = sp, "running"
	p.watch(sp)
	return p, nil
}

// setStage records where a starting pod is.
func (p *pod) setStage(s string) {
	p.mu.Lock()
	p.stage = s
	p.mu.Unlock()
	log.G(p.life).WithFields(log.Fields{"sandbox_id": p.id, "stage": s}).Debug("pod start")
}

// paths of the pod's run directory.
func (st *podState) socket() string  { return filepath.Join(st.RunDir, taskSocketName) }
func (st *podState) pidFile() string { return filepath.Join(st.RunDir, pidFileName) }
func (st *podState) output() string  { return filepath.Join(st.RunDir, outputName) }
func (st *podState) bundle() string  { return filepath.Join(st.Dir, bundleDir) }

// Start runs `quark -r <bundle> sandbox --task-socket <sock> --id <id>
// --pid-file <file>` (Kuasar's command line), which daemonizes; adopts the
// sandbox process by the pid it wrote, moves it into the pod's cgroup and
// returns once its task server answers. On any failure it leaves nothing
// running.
func (p *pod) Start(ctx context.Context) (_ sandbox.Endpoint, retErr error) {
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	t0 := time.Now()
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			p.setStage("start failed")
		}
	}()
	cleanCtx := context.WithoutCancel(ctx)
	if err := os.MkdirAll(st.RunDir, 0o700); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("run dir: %w", err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(st.RunDir) })
	cg, err := cgroups.New(st.Cgroup)
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("pod cgroup %s: %w", st.Cgroup, err)
	}
	undo = append(undo, func() { deleteCgroup(cleanCtx, st.Cgroup) })

	p.setStage("starting quark")
	sctx, cancel := context.WithTimeout(ctx, time.Duration(p.d.cfg.Quark.StartTimeout))
	defer cancel()
	// whatever the launch left (a sandbox process whose pid it wrote) goes
	// with a failed start
	undo = append(undo, func() { killLeftovers(cleanCtx, &st, p.d.cfg.Quark.Binary) })
	if err := p.launch(sctx, &st); err != nil {
		return sandbox.Endpoint{}, err
	}
	tLaunch := time.Now()
	pid, err := readPid(st.pidFile())
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("quark sandbox exited 0 but %w\n%s", err, outputTail(&st))
	}
	sp, err := hostproc.Adopt("quark", pid)
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("the Quark sandbox process: %w\n%s", err, outputTail(&st))
	}
	undo = append(undo, func() { _ = sp.KillWait(killWait) })
	// the sandbox process goes into the pod's cgroup, but on cgroup v2 one
	// that put itself below it stays where it is: one that runs containers
	// in cgroups below the pod's takes a leaf of its own there, since a
	// cgroup v2 with processes has no child with controllers (on v1 the
	// move is harmless and covers every hierarchy)
	if unified, _ := cgroups.Mode(); !unified || !within(st.Cgroup, pid) {
		if err := cg.AddProc(pid); err != nil && sp.Running() {
			return sandbox.Endpoint{}, fmt.Errorf("moving the sandbox process (pid %d) into %s: %w", pid, st.Cgroup, err)
		}
	}

	p.setStage("waiting for the task server")
	c, err := dial(sctx, st.socket(), aliveFunc(sp))
	if err != nil {
		if errdefs.IsDeadlineExceeded(err) && ctx.Err() == nil {
			err = fmt.Errorf("the sandbox's task server did not answer within quark.start_timeout = %s: %w", time.Duration(p.d.cfg.Quark.StartTimeout), err)
		}
		return sandbox.Endpoint{}, fmt.Errorf("%w\n%s", err, outputTail(&st))
	}
	st.Sandbox = sp.ID()
	p.mu.Lock()
	p.st, p.proc = st, sp
	p.mu.Unlock()
	p.conn.Set(c)
	p.setStage("running")
	p.watch(sp)
	log.G(ctx).WithFields(log.Fields{"pid": pid, "launch_ms": tLaunch.Sub(t0).Milliseconds(), "total_ms": time.Since(t0).Milliseconds()}).Info("Quark sandbox ready")
	return sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3, Pid: uint32(pid)}, nil
}

// launch runs Quark's command and waits for it: it daemonizes the sandbox
// process and exits once that wrote its pid.
func (p *pod) launch(ctx context.Context, st *podState) error {
	for _, f := range []string{st.pidFile(), st.socket()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	out, err := os.OpenFile(st.output(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, p.d.cfg.Quark.Binary, "-r", st.bundle(), "sandbox",
		"--task-socket", st.socket(), "--id", p.id, "--pid-file", st.pidFile())
	cmd.Dir = st.bundle()
	cmd.Stdout, cmd.Stderr = out, out
	// a session of its own: a signal to the daemon's group is not its
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (quark.start_timeout = %s)", ctx.Err(), time.Duration(p.d.cfg.Quark.StartTimeout))
		}
		return fmt.Errorf("%s sandbox: %w\n%s", p.d.cfg.Quark.Binary, err, outputTail(st))
	}
	return nil
}

// outputTail is the end of Quark's output, for errors.
func outputTail(st *podState) string {
	t := hostproc.Tail(st.output(), 15)
	if t == "" {
		return "(quark printed nothing)"
	}
	return "quark's output (last lines):\n" + t
}

// readPid reads Quark's pid file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("no pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q is no pid", path, b)
	}
	return pid, nil
}

// aliveFunc is transport's peer check for the sandbox process.
func aliveFunc(sp *hostproc.Process) func() error {
	return func() error {
		if sp.Running() {
			return nil
		}
		return fmt.Errorf("the Quark sandbox process (pid %d) ended: %s", sp.Pid(), sp.ExitStatus())
	}
}

// killLeftovers ends whatever of the pod runs that the daemon did not
// record: Quark's command of a start cut short (its arguments name the run
// directory), the sandbox process whose pid it wrote (if that pid is a
// process of Quark's binary), and every process left in the pod's cgroup.
func killLeftovers(ctx context.Context, st *podState, binary string) {
	var pids []int
	for _, pr := range proc.Find(proc.Naming(st.RunDir + "/")) {
		pids = append(pids, pr.PID) // first: it could still start one
	}
	if pid, err := readPid(st.pidFile()); err == nil {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == binary {
			pids = append(pids, pid)
		}
	}
	if in, err := cgroups.Procs(st.Cgroup); err == nil {
		pids = append(pids, in...)
	} else {
		log.G(ctx).WithError(err).WithField("cgroup", st.Cgroup).Warn("listing the processes of the pod's cgroup")
	}
	seen := map[int]bool{}
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if sp, err := hostproc.Adopt("quark", pid); err == nil {
			log.G(ctx).WithFields(log.Fields{"pid": pid, "run_dir": st.RunDir}).Warn("killing a process of the pod that this daemon did not record")
			_ = sp.KillWait(killWait)
		}
	}
}

// deleteCgroup removes the pod's cgroup, giving the processes just killed
// in it a moment to leave.
func deleteCgroup(ctx context.Context, path string) {
	if err := cgroups.Destroy(path, 2*time.Second); err != nil {
		log.G(ctx).WithError(err).WithField("cgroup", path).Warn("removing the pod's cgroup")
	}
}

// watch ends the pod when its sandbox process ends.
func (p *pod) watch(sp *hostproc.Process) {
	go func() {
		select {
		case <-sp.Done():
		case <-p.life.Done():
			return
		}
		p.mu.Lock()
		stopping := p.stopping
		p.mu.Unlock()
		p.conn.Close()
		if stopping {
			p.Set(0, sp.ExitedAt())
		} else if p.Set(sandbox.ExitCodeLost, sp.ExitedAt()) {
			log.G(p.life).WithFields(log.Fields{"sandbox_id": p.id, "pid": sp.Pid(), "exit": sp.ExitStatus()}).Warn("the pod's Quark sandbox process ended on its own")
		}
	}()
}

// Stop ends the sandbox process: Quark has no graceful end for a sandbox
// with containers, so it is killed (SIGKILL), as Kuasar's quark-sandboxer
// kills it; the controller has stopped the containers first.
func (p *pod) Stop(ctx context.Context, _ time.Duration) error {
	p.mu.Lock()
	sp, st := p.proc, p.st
	p.stopping = true
	p.mu.Unlock()
	if sp == nil {
		// never started, or a Start cut by a restart: end what it left
		killLeftovers(ctx, &st, p.d.cfg.Quark.Binary)
	} else if err := sp.KillWait(killWait); err != nil {
		return fmt.Errorf("stopping the Quark sandbox: %w", err)
	}
	p.conn.Close()
	p.Set(0, time.Now())
	return nil
}

// Cleanup releases what the pod holds on the host: its sandbox process
// (killed if it still runs), cgroup and run directory; the controller
// then removes the state directory with every mount below it (the
// sandbox root's shared bind, left by Quark). Idempotent.
func (p *pod) Cleanup(ctx context.Context) error {
	if err := p.Stop(ctx, 0); err != nil {
		return err
	}
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	killLeftovers(ctx, &st, p.d.cfg.Quark.Binary)
	deleteCgroup(ctx, st.Cgroup)
	if err := os.RemoveAll(st.RunDir); err != nil {
		return err
	}
	return nil
}

func (p *pod) DriverState() (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(&p.st)
}

// Metrics are the pod's cgroup's: the sandbox process and, for a Quark
// that nests them there, its containers.
func (p *pod) Metrics(ctx context.Context) (*types.Metric, error) {
	p.mu.Lock()
	path := p.st.Cgroup
	p.mu.Unlock()
	return cgroups.PodMetric(p.id, path)
}

// Describe adds the sandbox to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]string{"stage": p.stage, "quark": p.d.cfg.Quark.Binary, "bundle": p.st.bundle(),
		"task_socket": p.st.socket(), "cgroup": p.st.Cgroup, "run_dir": p.st.RunDir}
	if p.proc != nil {
		m["sandbox_pid"] = strconv.Itoa(p.proc.Pid())
	}
	return m
}

// ID is the sandbox id (taskfwd.Guest).
func (p *pod) ID() string { return p.id }

// Share is the sandbox root: Quark's bundle on the host, "/" inside
// (taskfwd.Guest).
func (p *pod) Share() (string, string) { return p.st.bundle(), "/" }

// Forwarding: Quark opens stdio by path inside its root, has no event
// queue and takes no bind mounts (taskfwd.Forwarder).
func (p *pod) Forwarding() taskfwd.Forwarding {
	p.mu.Lock()
	defer p.mu.Unlock()
	return taskfwd.Forwarding{StdioByPath: true, WaitExits: true, BindsInRootfs: true, PodShm: p.st.Shm}
}

// PodFiles are the pod's /etc files, for containers that lack them
// (taskfwd.PodFiler).
func (p *pod) PodFiles() map[string]string {
	out := map[string]string{}
	for _, n := range podfiles.Names {
		out["/etc/"+n] = filepath.Join(p.st.bundle(), podFilesDir, n)
	}
	return out
}

// Conn is the connection to the sandbox's task server, dialled again when
// the last one broke (taskfwd.Guest).
func (p *pod) Conn(ctx context.Context) (taskfwd.Conn, error) {
	p.mu.Lock()
	sp, st := p.proc, p.st
	p.mu.Unlock()
	if sp == nil || p.IsSet() || !sp.Running() {
		return nil, fmt.Errorf("pod %s: its Quark sandbox is not running: %w", p.id, errdefs.ErrUnavailable)
	}
	c, err := p.conn.Get(func() (*conn, error) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := dial(dctx, st.socket(), aliveFunc(sp))
		if err != nil {
			return nil, fmt.Errorf("pod %s: task server: %w", p.id, err)
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// within reports whether process pid is already in the cgroup at
// cgroupsPath or below it (not when that cannot be read).
func within(cgroupsPath string, pid int) bool {
	in, err := cgroups.Within(cgroupsPath, pid)
	return err == nil && in
}
