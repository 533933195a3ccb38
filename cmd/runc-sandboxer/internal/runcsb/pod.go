package runcsb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
	"github.com/magnetar-runtime/magnetar/shared/podfiles"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// driver creates pods.
type driver struct {
	env *daemon.Env
	cfg *Config
}

var _ sandbox.Driver = (*driver)(nil)

// podState is a pod's persisted, driver-private state.
type podState struct {
	NetNS        string `json:"netns,omitempty"`
	IPC          string `json:"ipc,omitempty"` // held ns file; "" = host
	UTS          string `json:"uts,omitempty"` // held ns file; "" = host
	HostNetwork  bool   `json:"host_network,omitempty"`
	HostPID      bool   `json:"host_pid,omitempty"`
	SharedPID    bool   `json:"shared_pid,omitempty"`
	InitPid      int    `json:"init_pid,omitempty"`
	InitStart    uint64 `json:"init_start,omitempty"`
	Shm          string `json:"shm,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	CgroupParent string `json:"cgroup_parent,omitempty"`
	Dir          string `json:"dir"`
	// UserNS is the pod's user namespace, held (hostUsers: false): the one
	// containerd made the pod's network namespace in. Its IPC and UTS
	// namespaces must belong to it, and only a process inside it can make
	// them (a multithreaded daemon cannot enter a user namespace), so the
	// pod's first container makes them and they are held from it
	// (LateNS) at ns/ipc and ns/uts.
	UserNS string `json:"user_ns,omitempty"`
	LateNS bool   `json:"late_ns,omitempty"`
}

type pod struct {
	exit.Latch
	id  string
	d   *driver
	mu  sync.Mutex
	st  podState
	ctx context.Context // lifetime
	// lateMu serialises container creation in a pod whose IPC and UTS
	// namespaces its first container makes (podState.LateNS), so that the
	// second joins what the first made.
	lateMu sync.Mutex
	// sysctls are applied once the late namespaces exist.
	sysctls map[string]string

	init *proc.Watch
}

var (
	_ sandbox.Instance  = (*pod)(nil)
	_ exit.Notifier     = (*pod)(nil) // the controller watches it without a goroutine
	_ sandbox.Describer = (*pod)(nil)
)

// Create prepares the pod's namespaces and files; it starts no process.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (_ sandbox.Instance, retErr error) {
	cfg := s.Config
	nso := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	st := podState{
		NetNS:        s.NetNSPath,
		HostNetwork:  nso.GetNetwork() == runtime.NamespaceMode_NODE,
		HostPID:      nso.GetPid() == runtime.NamespaceMode_NODE,
		SharedPID:    nso.GetPid() == runtime.NamespaceMode_POD,
		Hostname:     cfg.GetHostname(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(),
		Dir:          s.Dir,
	}
	switch m := nso.GetUsernsOptions().GetMode(); {
	case nso.GetUsernsOptions() == nil || m == runtime.NamespaceMode_NODE || m == runtime.NamespaceMode_POD:
	default:
		// a user namespace is the pod's or the host's: CRI defines no other
		return nil, fmt.Errorf("options.linux.security_context.namespace_options.userns_options.mode: %s: want POD or NODE: %w", m, errdefs.ErrInvalidArgument)
	}
	userns := nso.GetUsernsOptions() != nil && nso.GetUsernsOptions().GetMode() == runtime.NamespaceMode_POD
	if userns && (st.HostNetwork || st.HostPID || nso.GetIpc() == runtime.NamespaceMode_NODE) {
		return nil, fmt.Errorf("options.linux.security_context.namespace_options.userns_options: a pod with its own user namespace cannot share the host's network, PID or IPC namespace: %w", errdefs.ErrInvalidArgument)
	}
	if userns && st.SharedPID {
		if err := userNSInitTools(); err != nil {
			return nil, fmt.Errorf("options.linux.security_context.namespace_options: a shared PID namespace in a pod with its own user namespace: %w", err)
		}
	}
	pc, err := podfiles.Check(s.ID, st.NetNS, cfg, podfiles.Rules{Handler: "magnetar-runc", UserNS: true})
	if err != nil {
		return nil, err
	}
	st.Hostname = pc.Hostname

	defer func() {
		if retErr != nil {
			releasePod(ctx, &st)
		}
	}()
	var kinds []nsutil.Kind
	if nso.GetIpc() != runtime.NamespaceMode_NODE {
		kinds = append(kinds, "ipc")
	}
	if !st.HostNetwork {
		kinds = append(kinds, "uts")
	}
	if userns {
		u, err := nsutil.HoldOwner(filepath.Join(s.Dir, "ns"), st.NetNS)
		if err != nil {
			return nil, fmt.Errorf("netns_path %q: the pod's user namespace: %w", st.NetNS, err)
		}
		st.UserNS, st.LateNS = u, true
	} else if len(kinds) > 0 {
		held, err := nsutil.Create(ctx, filepath.Join(s.Dir, "ns"), kinds, st.Hostname)
		if err != nil {
			return nil, fmt.Errorf("pod namespaces: %w", err)
		}
		st.IPC, st.UTS = held["ipc"], held["uts"]
	}
	if sys := cfg.GetLinux().GetSysctls(); len(sys) > 0 && !st.LateNS {
		if err := nsutil.ApplySysctls(st.NetNS, st.IPC, sys); err != nil {
			return nil, fmt.Errorf("options.linux.sysctls: %w", err)
		}
	}
	if err := podfiles.Write(s.Dir, st.Hostname, st.HostNetwork, cfg.GetDnsConfig()); err != nil {
		return nil, err
	}
	if st.IPC != "" && d.cfg.Pod.ShmSize > 0 {
		shm := filepath.Join(s.Dir, "shm")
		if err := os.Mkdir(shm, 0o755); err != nil {
			return nil, err
		}
		data := "mode=1777,size=" + strconv.FormatInt(d.cfg.Pod.ShmSize, 10)
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
			return nil, fmt.Errorf("pod /dev/shm: %w", err)
		}
		st.Shm = shm
	}
	p := d.newPod(s.ID, st)
	if st.LateNS {
		p.sysctls = cfg.GetLinux().GetSysctls()
	}
	log.G(ctx).WithFields(log.Fields{"ipc": st.IPC != "", "uts": st.UTS != "", "shared_pid": st.SharedPID, "userns": st.UserNS != ""}).Debug("pod created")
	return p, nil
}

func (d *driver) newPod(id string, st podState) *pod {
	return &pod{id: id, d: d, st: st, ctx: d.env.Life}
}

// Recover rebuilds a pod after a restart.
func (d *driver) Recover(ctx context.Context, s *sandbox.State) (sandbox.Instance, error) {
	var st podState
	if err := json.Unmarshal(s.Driver, &st); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	p := d.newPod(s.ID, st)
	switch s.Phase {
	case sandbox.PhaseStopped:
		p.markExited(0)
		return p, nil
	case sandbox.PhaseStarting:
		// the daemon died inside Start: the controller stops the pod
		// next, and Stop finds a pod init that Start left by its command
		// line (its pid was never recorded)
		return p, nil
	}
	if st.LateNS {
		p.recoverLateNS(s.Config)
		st = p.st
	}
	for _, f := range []string{st.IPC, st.UTS, st.UserNS} {
		if f == "" {
			continue
		}
		if ok, _ := nsutil.IsNSFile(f, nsutil.Kind(filepath.Base(f))); !ok {
			log.G(ctx).WithField("sandbox_id", s.ID).Warnf("held namespace %s is gone", f)
			p.markExited(255)
			return p, nil
		}
	}
	if st.SharedPID && st.InitPid > 0 {
		if start, err := proc.StartTime(st.InitPid); err != nil || start != st.InitStart {
			p.markExited(255)
			return p, nil
		}
		w, err := proc.Open(st.InitPid)
		if err != nil {
			p.markExited(255)
			return p, nil
		}
		p.watchInit(w)
	}
	return p, nil
}

// recoverLateNS finds the IPC and UTS namespaces a late pod's first
// container made, held before the restart, or else the sysctls its first
// container is still to set (from the pod's persisted CRI config).
func (p *pod) recoverLateNS(config []byte) {
	dir := filepath.Join(p.st.Dir, "ns")
	ipc, uts := filepath.Join(dir, "ipc"), filepath.Join(dir, "uts")
	okIPC, _ := nsutil.IsNSFile(ipc, nsutil.KindIPC)
	okUTS, _ := nsutil.IsNSFile(uts, nsutil.KindUTS)
	if okIPC && okUTS {
		p.st.IPC, p.st.UTS = ipc, uts
		return
	}
	cfg := &runtime.PodSandboxConfig{}
	if err := proto.Unmarshal(config, cfg); err == nil {
		p.sysctls = cfg.GetLinux().GetSysctls()
	}
}

// lateSpec readies the spec of a container of a late pod whose namespaces
// do not exist yet: it makes them, so it also sets the pod's sysctls
// (linux.sysctl, the container's own winning). runc writes them from
// inside the pod's user namespace: from outside, an IPC namespace of
// another user namespace takes CAP_SYS_RESOURCE, which a node may not
// grant. Called with p.lateMu held.
func (p *pod) lateSpec(sp *specs.Spec) {
	p.mu.Lock()
	done := p.st.IPC != ""
	p.mu.Unlock()
	if done || len(p.sysctls) == 0 {
		return
	}
	if sp.Linux.Sysctl == nil {
		sp.Linux.Sysctl = map[string]string{}
	}
	for k, v := range p.sysctls {
		if _, own := sp.Linux.Sysctl[k]; !own {
			sp.Linux.Sysctl[k] = v
		}
	}
}

// joinLate is called with a container of a late pod created (its init
// waits in runc create, inside the namespaces runc made for it): the
// first such container's IPC and UTS namespaces become the pod's, held
// from it. Later containers join them (rewriteSpec). Called with
// p.lateMu held.
func (p *pod) joinLate(ctx context.Context, pid int) error {
	p.mu.Lock()
	done := p.st.IPC != ""
	p.mu.Unlock()
	if done {
		return nil
	}
	dir := filepath.Join(p.st.Dir, "ns")
	ipc, err := nsutil.Hold(dir, nsutil.KindIPC, fmt.Sprintf("/proc/%d/ns/ipc", pid))
	if err != nil {
		return fmt.Errorf("holding the pod's IPC namespace: %w", err)
	}
	uts, err := nsutil.Hold(dir, nsutil.KindUTS, fmt.Sprintf("/proc/%d/ns/uts", pid))
	if err != nil {
		_ = nsutil.Unhold(ipc)
		return fmt.Errorf("holding the pod's UTS namespace: %w", err)
	}
	p.mu.Lock()
	p.st.IPC, p.st.UTS = ipc, uts
	p.mu.Unlock()
	log.G(ctx).WithFields(log.Fields{"sandbox_id": p.id, "pid": pid}).Debug("pod IPC and UTS namespaces held from its first container")
	return nil
}

// releasePod undoes what Create did. Idempotent.
func releasePod(ctx context.Context, st *podState) {
	if st.Shm != "" {
		if err := unix.Unmount(st.Shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			log.G(ctx).WithError(err).Warn("unmounting pod shm")
		}
	}
	if err := nsutil.Release(filepath.Join(st.Dir, "ns")); err != nil {
		log.G(ctx).WithError(err).Warn("releasing pod namespaces")
	}
}

// Start starts the pod's init when it shares a PID namespace, and returns the
// Task API endpoint.
func (p *pod) Start(ctx context.Context) (sandbox.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ep := sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3}
	if p.st.SharedPID && p.init == nil {
		pid, w, err := startPodInit(ctx, p.id, p.st.UserNS)
		if err != nil {
			return ep, fmt.Errorf("pod init: %w", err)
		}
		p.st.InitPid = pid
		p.st.InitStart, _ = proc.StartTime(pid)
		p.watchInit(w)
	}
	ep.Pid = uint32(p.st.InitPid)
	return ep, nil
}

// podInitBinary is the pod init to run: magnetar-podinit beside this binary
// (a small process, about as much memory as a pause container), else this
// binary itself (the same init, but a whole sandboxer runtime per pod).
func podInitBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	small := filepath.Join(filepath.Dir(self), podinit.Binary)
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return small, nil
	}
	return self, nil
}

// startPodInit runs the init of pod id as PID 1 of a new PID namespace,
// one owned by the pod's user namespace userns when it has one.
func startPodInit(ctx context.Context, id, userns string) (int, *proc.Watch, error) {
	bin, err := podInitBinary()
	if err != nil {
		return 0, nil, err
	}
	if userns != "" {
		return startPodInitInUserNS(ctx, bin, id, userns)
	}
	cmd := exec.Command(bin, podinit.Args(id)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	pid := cmd.Process.Pid
	w, err := proc.Open(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		return 0, nil, err
	}
	// the watch reaps it; os.Process must not
	_ = cmd.Process.Release()
	return pid, w, nil
}

func (p *pod) watchInit(w *proc.Watch) {
	p.init = w
	w.Notify(func() {
		code, _, _ := w.Status()
		log.G(p.ctx).WithFields(log.Fields{"sandbox_id": p.id, "status": code}).Info("pod init exited")
		p.markExited(uint32(code))
	})
}

func (p *pod) markExited(code uint32) { p.Set(code, time.Now()) }

// Stop ends the pod's init (its containers are stopped already).
func (p *pod) Stop(ctx context.Context, timeout time.Duration) error {
	if err := p.stopInit(); err != nil {
		return err
	}
	p.markExited(0)
	return nil
}

// stopInit kills the pod's init: the one this daemon watches, or one found
// by its command line that a Start cut by a daemon restart left unrecorded.
func (p *pod) stopInit() error {
	p.mu.Lock()
	w, shared := p.init, p.st.SharedPID
	p.mu.Unlock()
	if w == nil {
		if shared {
			for _, pid := range findPodInits(p.id) {
				log.G(p.ctx).WithFields(log.Fields{"sandbox_id": p.id, "pid": pid}).Warn("killing a pod init this daemon did not record")
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		return nil
	}
	_ = unix.Kill(w.Pid(), unix.SIGKILL)
	select {
	case <-w.Done():
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("pod init %d did not exit: %w", w.Pid(), errdefs.ErrUnavailable)
	}
}

// isPodInit matches the command line of pod id's init.
func isPodInit(id string) func(args []string) bool {
	want := podinit.Args(id)
	return func(args []string) bool { return len(args) > 0 && slices.Equal(args[1:], want) }
}

// findPodInits lists the processes whose command line is the init of pod id.
func findPodInits(id string) []int {
	var out []int
	for _, p := range proc.Find(isPodInit(id)) {
		out = append(out, p.PID)
	}
	return out
}

// Cleanup releases the pod's namespaces and files. Idempotent.
func (p *pod) Cleanup(ctx context.Context) error {
	if err := p.stopInit(); err != nil {
		return err
	}
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	releasePod(ctx, &st)
	return nil
}

func (p *pod) DriverState() (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(&p.st)
}

// Describe adds the pod's namespaces to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return map[string]string{
		"netns":      p.st.NetNS,
		"ipc_ns":     p.st.IPC,
		"uts_ns":     p.st.UTS,
		"shared_pid": strconv.FormatBool(p.st.SharedPID),
		"init_pid":   strconv.Itoa(p.st.InitPid),
	}
}
