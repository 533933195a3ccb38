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
	"golang.org/x/sys/unix"
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
}

type pod struct {
	exit.Latch
	id  string
	d   *driver
	mu  sync.Mutex
	st  podState
	ctx context.Context // lifetime

	init *proc.Watch
}

var (
	_ sandbox.Instance  = (*pod)(nil)
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
	if nso.GetUsernsOptions() != nil && nso.GetUsernsOptions().GetMode() == runtime.NamespaceMode_POD {
		return nil, fmt.Errorf("options.linux.security_context.namespace_options.userns_options: user namespaces are not supported by magnetar-runc: %w", errdefs.ErrNotImplemented)
	}
	if !st.HostNetwork && st.NetNS == "" {
		return nil, fmt.Errorf("netns_path: must be set for a pod that does not use the host network: %w", errdefs.ErrInvalidArgument)
	}
	if st.NetNS != "" {
		if ok, err := nsutil.IsNSFile(st.NetNS, "net"); err != nil || !ok {
			return nil, fmt.Errorf("netns_path %q: not a network namespace (%v): %w", st.NetNS, err, errdefs.ErrInvalidArgument)
		}
	}
	if st.Hostname == "" {
		st.Hostname = s.ID[:min(len(s.ID), 12)]
	}
	if err := podfiles.ValidateHostname(st.Hostname); err != nil {
		return nil, err
	}
	if err := podfiles.ValidateSysctls(cfg.GetLinux().GetSysctls(), st.HostNetwork, nso.GetIpc() == runtime.NamespaceMode_NODE); err != nil {
		return nil, err
	}

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
	if len(kinds) > 0 {
		held, err := nsutil.Create(ctx, filepath.Join(s.Dir, "ns"), kinds, st.Hostname)
		if err != nil {
			return nil, fmt.Errorf("pod namespaces: %w", err)
		}
		st.IPC, st.UTS = held["ipc"], held["uts"]
	}
	if sys := cfg.GetLinux().GetSysctls(); len(sys) > 0 {
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
	log.G(ctx).WithFields(log.Fields{"ipc": st.IPC != "", "uts": st.UTS != "", "shared_pid": st.SharedPID}).Debug("pod created")
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
	for _, f := range []string{st.IPC, st.UTS} {
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
		pid, w, err := startPodInit(p.id)
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

// startPodInit runs the init of pod id as PID 1 of a new PID namespace.
func startPodInit(id string) (int, *proc.Watch, error) {
	bin, err := podInitBinary()
	if err != nil {
		return 0, nil, err
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
	go func() {
		<-w.Done()
		code, _, _ := w.Status()
		log.G(p.ctx).WithFields(log.Fields{"sandbox_id": p.id, "status": code}).Info("pod init exited")
		p.markExited(uint32(code))
	}()
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

// findPodInits lists the processes whose command line is the init of pod id.
func findPodInits(id string) []int {
	want := podinit.Args(id)
	var out []int
	for _, p := range proc.Find(func(args []string) bool { return slices.Equal(args[1:], want) }) {
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
