package vmmsb

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/podnet"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/pool"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/killpoint"
	"github.com/magnetar-runtime/magnetar/shared/podfiles"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// podFilesDir is the pod's own directory in the share (/etc/hostname, hosts,
// resolv.conf). A container id cannot start with '.', so it never collides.
const podFilesDir = ".pod"

// clockSyncPeriod is how often a running guest's clock is checked against
// the host's (a VM under emulation drifts); maxClockSkew is what is
// corrected.
const (
	clockSyncPeriod = time.Minute
	maxClockSkew    = 10 * time.Millisecond
)

// driver creates pod VMs.
type driver struct {
	env *daemon.Env
	cfg *Config
	net network
	// backends are the hypervisors the configuration uses, by name.
	backends map[string]*backend
	// pool keeps VMs booted ahead of their pods ([pool]).
	pool *vmPool
}

// backend is the hypervisor of a pod: of its sandboxer name at Create, of
// its persisted state after.
func (d *driver) backend(name string) (*backend, error) {
	b, ok := d.backends[name]
	if !ok {
		return nil, fmt.Errorf("hypervisor %q: not configured in this daemon (vmm.toml [hypervisors]): %w", name, errdefs.ErrFailedPrecondition)
	}
	return b, nil
}

var _ sandbox.Driver = (*driver)(nil)

// podState is a pod's persisted, driver-private state.
type podState struct {
	// Dir is the sandbox's state directory; the share is Dir/share, or
	// Share for a VM taken from the pool.
	Dir string `json:"dir"`
	// Share is the share of a VM taken from the pool (its own, made when
	// it booted); PoolDir that VM's state directory, removed with the pod.
	Share   string `json:"share,omitempty"`
	PoolDir string `json:"pool_dir,omitempty"`
	// RunDir is the VM's run directory (sockets, console log).
	RunDir    string `json:"run_dir"`
	NetNS     string `json:"netns"`
	Hostname  string `json:"hostname"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int    `json:"memory_mib"`
	// Cgroup is the VM's host cgroup (cgroups path).
	Cgroup     string          `json:"cgroup"`
	Hypervisor string          `json:"hypervisor"`
	Accel      string          `json:"accel,omitempty"`
	VM         json.RawMessage `json:"vm,omitempty"`
	Net        podnet.State    `json:"net"`
}

// pod is one pod VM. It is the taskfwd.Guest its containers run in.
type pod struct {
	exit.Latch
	id  string
	d   *driver
	cfg *runtime.PodSandboxConfig
	// life is the daemon's lifetime: watchers run under it.
	life context.Context

	mu    sync.Mutex
	st    podState
	vm    vm.VM
	stage string // where a starting pod is, for Status
	stop  context.CancelFunc
	// stopping is set once Stop or Cleanup ends the VM on purpose.
	stopping bool

	conn taskfwd.Redial[*agentclient.Client]
}

var (
	_ sandbox.Instance        = (*pod)(nil)
	_ exit.Notifier           = (*pod)(nil) // the controller watches it without a goroutine
	_ sandbox.MetricsReporter = (*pod)(nil)
	_ sandbox.Describer       = (*pod)(nil)
	_ sandbox.Updater         = (*pod)(nil)
	_ taskfwd.Guest           = (*pod)(nil)
)

// runDirOf is the run directory of sandbox id.
func (d *driver) runDirOf(id string) string {
	return config.PodRunDir(d.cfg.RunDir, id)
}

// Create checks the pod and prepares its share; it starts nothing.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
	cfg := s.Config
	pc, err := podfiles.Check(s.ID, s.NetNSPath, cfg, podfiles.Rules{Handler: Handler, OwnKernel: "a pod in a VM",
		NoHostNetwork: "a host-network pod cannot run in a VM, which has its own kernel and network stack (use a runtime handler such as magnetar-runc)"})
	if err != nil {
		return nil, err
	}
	hostname := pc.Hostname
	b, err := d.backend(d.cfg.HypervisorFor(s.Sandboxer))
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", s.Sandboxer, err)
	}
	if _, err := b.ready(); err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", s.Sandboxer, err)
	}
	vcpus, mem := d.size(cfg)
	st := podState{Dir: s.Dir, RunDir: d.runDirOf(s.ID), NetNS: s.NetNSPath, Hostname: hostname, VCPUs: vcpus, MemoryMiB: mem,
		Cgroup: cgroups.PodPath(Handler, cfg.GetLinux().GetCgroupParent(), s.ID), Hypervisor: b.name, Accel: b.accel}
	if _, err := cgroups.ResolvePath(st.Cgroup); err != nil {
		return nil, fmt.Errorf("options.linux.cgroup_parent %q: %w", cfg.GetLinux().GetCgroupParent(), err)
	}
	files := filepath.Join(s.Dir, "share", podFilesDir)
	if err := os.MkdirAll(files, 0o711); err != nil {
		return nil, err
	}
	if err := podfiles.Write(files, hostname, false, cfg.GetDnsConfig()); err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"vcpus": vcpus, "memory_mib": mem, "hypervisor": st.Hypervisor, "accel": st.Accel}).Debug("pod created")
	return d.newPod(s.ID, st, cfg), nil
}

// size is the VM size of a pod: the configured default, raised to the pod's
// limits (CRI's pod-level resources), within the configured maximum.
// vCPUs: its containers' CPU limits plus its overhead. Memory: its
// containers' memory limits plus the guest kernel's and agent's
// (vm.memory_overhead_mib), never the pod's overhead: the kubelet bounds
// the pod cgroup, which holds QEMU and virtiofsd, at the containers'
// limits plus the overhead, so guest RAM sized with the overhead too could
// outgrow that bound by QEMU's own memory and have the host kill QEMU
// instead of the guest its container.
func (d *driver) size(cfg *runtime.PodSandboxConfig) (vcpus, memMiB int) {
	c := d.cfg.VM
	vcpus, memMiB = c.VCPUs, c.MemoryMiB
	res := cfg.GetLinux().GetResources()
	over := cfg.GetLinux().GetOverhead()
	if q, p := res.GetCpuQuota()+over.GetCpuQuota(), res.GetCpuPeriod(); q > 0 && p > 0 {
		vcpus = max(vcpus, int((q+p-1)/p))
	}
	if m := res.GetMemoryLimitInBytes(); m > 0 {
		memMiB = max(memMiB, int((m+(1<<20)-1)>>20)+c.MemoryOverheadMiB)
	}
	return min(vcpus, c.MaxVCPUs), min(memMiB, c.MaxMemoryMiB)
}

func (d *driver) newPod(id string, st podState, cfg *runtime.PodSandboxConfig) *pod {
	return &pod{id: id, d: d, st: st, cfg: cfg, life: d.env.Life, stage: "created"}
}

// Recover finds a pod again after a daemon restart: its VM from the
// hypervisor's persisted state. A VM that died meanwhile is reported exited.
func (d *driver) Recover(ctx context.Context, s *sandbox.State) (sandbox.Instance, error) {
	var st podState
	if err := json.Unmarshal(s.Driver, &st); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	cfg := &runtime.PodSandboxConfig{}
	if len(s.Config) > 0 {
		if err := proto.Unmarshal(s.Config, cfg); err != nil {
			return nil, fmt.Errorf("pod config: %w", err)
		}
	}
	p := d.newPod(s.ID, st, cfg)
	switch s.Phase {
	case sandbox.PhaseStopped:
		p.Set(0, time.Now())
		return p, nil
	case sandbox.PhaseCreated:
		return p, nil
	}
	if len(st.VM) == 0 {
		// a Start cut before its VM was recorded: Stop finds what it left
		p.stage = "start interrupted"
		return p, nil
	}
	b, err := d.backend(st.Hypervisor)
	if err != nil {
		log.G(ctx).WithError(err).WithField("sandbox_id", s.ID).Warn("the VM's hypervisor is no longer configured: reporting the pod exited")
		p.Set(sandbox.ExitCodeLost, time.Now())
		return p, nil
	}
	v, err := b.hv.Recover(ctx, st.VM)
	if err != nil {
		log.G(ctx).WithError(err).WithField("sandbox_id", s.ID).Warn("the VM could not be found again: reporting the pod exited")
		p.Set(sandbox.ExitCodeLost, time.Now())
		return p, nil
	}
	p.vm, p.stage = v, "running"
	p.watch(v)
	return p, nil
}

// setStage records where a starting pod is.
func (p *pod) setStage(s string) {
	p.mu.Lock()
	p.stage = s
	p.mu.Unlock()
	log.G(p.life).WithFields(log.Fields{"sandbox_id": p.id, "stage": s}).Debug("pod start")
}

// Start boots the pod's VM: network, cgroup, VMM, agent, guest setup. It
// returns once the agent answers and the guest is set up; on any failure
// it leaves nothing running.
func (p *pod) Start(ctx context.Context) (_ sandbox.Endpoint, retErr error) {
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	lg := log.G(ctx)
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
	b, err := p.d.backend(st.Hypervisor)
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	bins, err := b.ready()
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	// no pool VM boots while a pod starts, from the pool or not
	release := p.d.pool.holdStart()
	defer release()
	if v := p.d.pool.take(pool.Shape{Hypervisor: b.name, VCPUs: st.VCPUs, MemoryMiB: st.MemoryMiB}); v != nil {
		ep, err := p.startPooled(ctx, v, st)
		if !errors.Is(err, errColdBoot) {
			return ep, err
		}
		lg.WithError(err).Info("booting a VM for the pod")
	}
	if err := os.MkdirAll(st.RunDir, 0o700); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("vm run dir: %w", err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(st.RunDir) })

	p.setStage("network")
	nw, err := p.d.net.Attach(ctx, st.NetNS)
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("pod network: %w", err)
	}
	st.Net = nw.State()
	undo = append(undo, func() {
		if err := p.d.net.Detach(cleanCtx, st.Net); err != nil {
			lg.WithError(err).Warn("detaching the pod network")
		}
	})
	defer nw.Close()

	if _, err := cgroups.New(st.Cgroup); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("vm cgroup %s: %w", st.Cgroup, err)
	}
	undo = append(undo, func() { _ = cgroups.Delete(st.Cgroup) })

	p.setStage("starting the VMM")
	vcfg := p.vmConfig(&st, nw, b, bins)
	v, err := b.hv.Start(ctx, vcfg)
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("%s: %w", b.name, err)
	}
	undo = append(undo, func() {
		sctx, cancel := context.WithTimeout(cleanCtx, 10*time.Second)
		defer cancel()
		if err := v.Stop(sctx, true); err != nil {
			lg.WithError(err).Warn("stopping the VM of a failed start")
		}
		_ = v.Cleanup()
	})
	_ = nw.Close() // the VMM holds the taps now
	tVMM := time.Now()

	p.setStage("booting: waiting for the agent")
	bctx, cancel := context.WithTimeout(ctx, time.Duration(p.d.cfg.VM.BootTimeout))
	defer cancel()
	cl, err := agentclient.Dial(bctx, v.Agent(), agentclient.Options{Alive: v.Alive})
	if err != nil {
		if errdefs.IsDeadlineExceeded(err) && ctx.Err() == nil {
			err = fmt.Errorf("no answer from the guest agent within vm.boot_timeout = %s: %w", time.Duration(p.d.cfg.VM.BootTimeout), err)
		}
		return sandbox.Endpoint{}, fmt.Errorf("%w\nguest console (last lines):\n%s", err, v.ConsoleTail(25))
	}
	undo = append(undo, func() { _ = cl.Close() })
	tAgent := time.Now()

	p.setStage("setting up the guest")
	// within the boot timeout too: a guest that answered once and then
	// does not fails the start rather than hold it
	if _, err := cl.Sandbox().Setup(bctx, p.setupRequest(&st, nw)); err != nil {
		if errdefs.IsDeadlineExceeded(err) && ctx.Err() == nil {
			err = fmt.Errorf("the guest agent did not finish the pod setup within vm.boot_timeout = %s: %w", time.Duration(p.d.cfg.VM.BootTimeout), err)
		}
		return sandbox.Endpoint{}, fmt.Errorf("guest setup: %w\nguest console (last lines):\n%s", err, v.ConsoleTail(25))
	}
	if _, err := cl.SyncClock(bctx, maxClockSkew); err != nil {
		lg.WithError(err).Warn("guest clock")
	}
	vs, err := v.State()
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	st.VM = vs
	p.mu.Lock()
	p.st, p.vm = st, v
	p.mu.Unlock()
	p.conn.Set(cl)
	p.setStage("running")
	p.watch(v)
	lg.WithFields(log.Fields{"vmm_ms": tVMM.Sub(t0).Milliseconds(), "agent_ms": tAgent.Sub(tVMM).Milliseconds(),
		"setup_ms": time.Since(tAgent).Milliseconds(), "total_ms": time.Since(t0).Milliseconds(),
		"agent_version": cl.Health().GetAgentVersion()}).Info("pod VM ready")
	return p.endpoint(v), nil
}

// endpoint is the Task API endpoint of the pod running in v; its pid is the
// VMM's.
func (p *pod) endpoint(v vm.VM) sandbox.Endpoint {
	pid := 0
	if pids := v.Pids(); len(pids) > 0 {
		pid = pids[0]
	}
	return sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3, Pid: uint32(pid)}
}

// errColdBoot says a pool VM cannot serve the pod (it has been destroyed):
// Start boots one instead.
var errColdBoot = errors.New("the pool VM does not fit the pod")

// startPooled is Start with v, a VM of the pod's shape taken from the pool:
// only what is the pod's is done (claim, network, cgroup, pod files, guest
// setup with fresh entropy and clock). On failure v is destroyed (a VM
// serves one pod, or none) and nothing of the pod's is left.
func (p *pod) startPooled(ctx context.Context, v *pooledVM, st podState) (_ sandbox.Endpoint, retErr error) {
	lg := log.G(ctx).WithField("pool_vm", v.name)
	t0 := time.Now()
	cleanCtx := context.WithoutCancel(ctx)
	cgroupMade := false
	var undo []func()
	undo = append(undo, func() {
		if err := v.Destroy(cleanCtx); err != nil {
			lg.WithError(err).Warn("destroying the pool VM of a failed start")
		}
		if cgroupMade {
			_ = cgroups.Delete(st.Cgroup)
		}
	})
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			if !errors.Is(retErr, errColdBoot) {
				p.setStage("start failed")
			}
		}
	}()
	p.setStage("claiming a pool VM")
	if err := v.claim(p.id); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("pool VM %s: claim: %w", v.name, err)
	}
	killpoint.Hit(killpoint.VMMPoolClaimed)
	nw, err := p.d.net.Adopt(ctx, st.NetNS, p.d.pool.hold, v.taps)
	if errors.Is(err, podnet.ErrLinkCount) {
		return sandbox.Endpoint{}, fmt.Errorf("%w: %w", errColdBoot, err)
	}
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("pod network: %w", err)
	}
	st.Net = nw.State()
	undo = append(undo, func() {
		if err := p.d.net.Detach(cleanCtx, st.Net); err != nil {
			lg.WithError(err).Warn("detaching the pod network")
		}
	})
	if _, err := cgroups.New(st.Cgroup); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("vm cgroup %s: %w", st.Cgroup, err)
	}
	cgroupMade = true
	if err := v.moveCgroup(st.Cgroup); err != nil {
		return sandbox.Endpoint{}, err
	}
	if err := podfiles.Write(filepath.Join(v.share, podFilesDir), st.Hostname, false, p.cfg.GetDnsConfig()); err != nil {
		return sandbox.Endpoint{}, err
	}
	tClaim := time.Now()

	p.setStage("setting up the guest")
	req := p.setupRequest(&st, nw)
	// the guest's NICs have the MACs they booted with: each takes its pod
	// interface's
	for i, ifc := range req.Interfaces {
		ifc.SetHwAddr, ifc.HwAddr = ifc.HwAddr, v.macs[i].String()
	}
	// a guest booted ahead of its pod reseeds its RNG from the host's
	req.Entropy = make([]byte, poolEntropyBytes)
	if _, err := rand.Read(req.Entropy); err != nil {
		return sandbox.Endpoint{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(p.d.cfg.VM.BootTimeout))
	defer cancel()
	if _, err := v.cl.Sandbox().Setup(sctx, req); err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("guest setup: %w\nguest console (last lines):\n%s", err, v.vm.ConsoleTail(25))
	}
	// the guest's clock ran on while it waited in the pool
	if _, err := v.cl.SyncClock(sctx, maxClockSkew); err != nil {
		lg.WithError(err).Warn("guest clock")
	}
	vs, err := v.vm.State()
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	st.RunDir, st.Share, st.PoolDir, st.VM = v.runDir, v.share, v.dir, vs
	p.mu.Lock()
	p.st, p.vm = st, v.vm
	p.mu.Unlock()
	p.conn.Set(v.cl)
	p.setStage("running")
	p.watch(v.vm)
	lg.WithFields(log.Fields{"claim_ms": tClaim.Sub(t0).Milliseconds(), "setup_ms": time.Since(tClaim).Milliseconds(),
		"total_ms": time.Since(t0).Milliseconds()}).Info("pod VM ready (from the pool)")
	return p.endpoint(v.vm), nil
}

// vmConfig is a VM of the configuration: id names its processes, runDir
// holds its sockets, share is exported to the guest, cgroup holds its
// processes. The caller adds the NICs.
func (d *driver) vmConfig(id, runDir, share, cgroup string, vcpus, memMiB int, b *backend, bins VMMConf) *vm.Config {
	c := d.cfg
	args := append([]string{agentapi.CmdlineLogLevel + "=" + c.VM.AgentLogLevel}, c.VM.KernelArgs...)
	return &vm.Config{
		ID: id, Dir: runDir, Kernel: c.VM.Kernel, Initrd: c.VM.Initrd, KernelArgs: args,
		VCPUs: vcpus, MemoryMiB: memMiB, Share: share, ShareTag: agentapi.DefaultShareTag,
		Agent: vm.AgentChannel{Kind: b.channel}, Cgroup: cgroup, Accel: b.accel, TCGBufferMiB: c.VM.TCGBufferMiB,
		Binary: bins.Binary, Helpers: map[string]string{vm.HelperVirtiofsd: bins.Virtiofsd},
	}
}

// vmConfig is the VM of a pod that boots its own.
func (p *pod) vmConfig(st *podState, nw *podnet.Network, b *backend, bins VMMConf) *vm.Config {
	cfg := p.d.vmConfig(p.id, st.RunDir, filepath.Join(st.Dir, "share"), st.Cgroup, st.VCPUs, st.MemoryMiB, b, bins)
	for _, l := range nw.Links {
		cfg.NICs = append(cfg.NICs, vm.NIC{Tap: l.TapFile, TapName: l.Tap, MAC: l.MAC.String(), MTU: l.MTU})
	}
	return cfg
}

// setupRequest is what the agent sets up: identity and network.
func (p *pod) setupRequest(st *podState, nw *podnet.Network) *agentapi.SetupRequest {
	req := &agentapi.SetupRequest{Hostname: st.Hostname, Sysctls: p.cfg.GetLinux().GetSysctls()}
	if dns := p.cfg.GetDnsConfig(); dns != nil {
		req.Dns = &agentapi.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	req.Interfaces, req.Routes = nw.Interfaces(), nw.Routes
	return req
}

// watch ends the pod when its VM ends, and keeps the guest clock in step
// while it runs.
func (p *pod) watch(v vm.VM) {
	ctx, cancel := context.WithCancel(p.life)
	p.mu.Lock()
	p.stop = cancel
	p.mu.Unlock()
	go func() {
		defer cancel()
		tick := time.NewTicker(clockSyncPeriod)
		defer tick.Stop()
		for {
			select {
			case <-v.Done():
				p.mu.Lock()
				stopping := p.stopping
				p.mu.Unlock()
				if stopping {
					p.Set(0, v.ExitedAt())
				} else if p.Set(sandbox.ExitCodeLost, v.ExitedAt()) {
					log.G(p.life).WithFields(log.Fields{"sandbox_id": p.id, "console": v.ConsoleTail(5)}).Warn("the pod's VM ended on its own")
				}
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				p.syncClock(ctx)
			}
		}
	}()
}

func (p *pod) syncClock(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := p.Conn(cctx)
	if err != nil {
		return
	}
	if off, err := c.(*agentclient.Client).SyncClock(cctx, maxClockSkew); err != nil {
		log.G(ctx).WithError(err).WithField("sandbox_id", p.id).Debug("guest clock")
	} else if off > maxClockSkew || off < -maxClockSkew {
		log.G(ctx).WithFields(log.Fields{"sandbox_id": p.id, "offset": off}).Debug("guest clock stepped")
	}
}

// Stop ends the VM: the guest is asked to power off (within timeout), then
// the VMM to quit, then it is killed.
func (p *pod) Stop(ctx context.Context, timeout time.Duration) error {
	p.mu.Lock()
	v, st, cancel := p.vm, p.st, p.stop
	p.stopping = true
	p.mu.Unlock()
	if v == nil {
		// never started, or a Start cut by a restart: end what it left
		killProcessesOf(ctx, st.RunDir)
		p.d.pool.reclaim(ctx, p.id)
		p.Set(0, time.Now())
		return nil
	}
	select {
	case <-v.Done():
	default:
		if timeout > 0 {
			p.powerOff(ctx, v, timeout)
		}
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		err := v.Stop(sctx, false)
		scancel()
		if err != nil {
			return fmt.Errorf("stopping the VM: %w", err)
		}
	}
	if cancel != nil {
		cancel()
	}
	p.conn.Close()
	if err := p.d.net.Detach(ctx, st.Net); err != nil {
		log.G(ctx).WithError(err).Warn("detaching the pod network")
	}
	p.Set(0, time.Now())
	return nil
}

// powerOff asks the guest to shut down and waits for the VM to end, within
// timeout.
func (p *pod) powerOff(ctx context.Context, v vm.VM, timeout time.Duration) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.Conn(tctx)
	if err == nil {
		_, err = c.(*agentclient.Client).Sandbox().Shutdown(tctx, &agentapi.ShutdownRequest{})
	}
	if err != nil && !errdefs.IsUnavailable(err) {
		log.G(ctx).WithError(err).WithField("sandbox_id", p.id).Debug("guest power-off")
		return
	}
	select {
	case <-v.Done():
	case <-tctx.Done():
	}
}

// Cleanup releases what the pod holds on the host: its VM (killed if it
// still runs), network, cgroup and run directory. Idempotent.
func (p *pod) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	v, st, cancel := p.vm, p.st, p.stop
	p.stopping = true
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.conn.Close()
	var errs []error
	if v != nil {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		if err := v.Stop(sctx, true); err != nil {
			errs = append(errs, err)
		}
		scancel()
		if err := v.Cleanup(); err != nil {
			errs = append(errs, err)
		}
	}
	killProcessesOf(ctx, st.RunDir)
	if v == nil {
		p.d.pool.reclaim(ctx, p.id)
	}
	if err := p.d.net.Detach(ctx, st.Net); err != nil {
		log.G(ctx).WithError(err).Warn("detaching the pod network")
	}
	if err := cgroups.Delete(st.Cgroup); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).Warn("removing the VM's cgroup")
	}
	if err := os.RemoveAll(st.RunDir); err != nil {
		errs = append(errs, err)
	}
	if st.PoolDir != "" {
		// the share of a VM from the pool is its own, outside the pod's dir
		if err := virtiofsd.ReleaseShare(st.Share); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(st.PoolDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killProcessesOf kills every process whose command line names dir (a VM's
// run directory appears in its VMM's and helpers' arguments), for a Start
// cut by a daemon restart before it recorded them.
func killProcessesOf(ctx context.Context, dir string) {
	if dir == "" {
		return
	}
	for _, p := range proc.Find(proc.Naming(dir + "/")) {
		log.G(ctx).WithFields(log.Fields{"pid": p.PID, "run_dir": dir}).Warn("killing a VM process this daemon did not record")
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

func (p *pod) DriverState() (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(&p.st)
}

// Metrics are the VM's host cgroup figures: what the pod costs the node.
func (p *pod) Metrics(ctx context.Context) (*types.Metric, error) {
	p.mu.Lock()
	path := p.st.Cgroup
	p.mu.Unlock()
	return cgroups.PodMetric(p.id, path)
}

// Update applies a pod's new CPU resources to its VM's host cgroup; a VM's
// memory and vCPUs are fixed at boot, so those are named in an error.
func (p *pod) Update(ctx context.Context, u *sandbox.Update) error {
	r := u.Resources
	if r == nil {
		return nil
	}
	p.mu.Lock()
	path := p.st.Cgroup
	p.mu.Unlock()
	var cannot []string
	if r.GetMemoryLimitInBytes() != 0 {
		cannot = append(cannot, "memory_limit_in_bytes (a VM's memory is fixed at boot)")
	}
	res := cpuResources(r)
	if res != nil {
		cg, err := cgroups.Load(path)
		if err != nil {
			return err
		}
		if err := cg.Update(res); err != nil {
			return err
		}
	}
	if len(cannot) > 0 {
		return fmt.Errorf("update: %s: %w", strings.Join(cannot, ", "), errdefs.ErrNotImplemented)
	}
	return nil
}

// Describe adds the VM to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]string{
		"stage": p.stage, "hypervisor": p.st.Hypervisor, "accel": p.st.Accel,
		"vcpus": strconv.Itoa(p.st.VCPUs), "memory_mib": strconv.Itoa(p.st.MemoryMiB),
		"cgroup": p.st.Cgroup, "run_dir": p.st.RunDir, "console": filepath.Join(p.st.RunDir, "console.log"),
	}
	if p.st.PoolDir != "" {
		m["pool_vm"] = filepath.Base(p.st.PoolDir)
	}
	if p.vm != nil {
		m["agent"] = p.vm.Agent().String()
		if pids := p.vm.Pids(); len(pids) > 0 {
			m["vmm_pid"] = strconv.Itoa(pids[0])
		}
	}
	return m
}

// ID is the sandbox id (taskfwd.Guest).
func (p *pod) ID() string { return p.id }

// Share is the pod's share, on the host and in the guest (taskfwd.Guest).
func (p *pod) Share() (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.share(), agentapi.ShareRoot
}

// share is the pod's share on the host.
func (st *podState) share() string {
	if st.Share != "" {
		return st.Share
	}
	return filepath.Join(st.Dir, "share")
}

// PodFiles are the pod's /etc files, for containers that lack them
// (taskfwd.PodFiler).
func (p *pod) PodFiles() map[string]string {
	host, _ := p.Share()
	out := map[string]string{}
	for _, n := range podfiles.Names {
		out["/etc/"+n] = filepath.Join(host, podFilesDir, n)
	}
	return out
}

// Conn is the agent connection, dialled again when the last one broke
// (taskfwd.Guest).
func (p *pod) Conn(ctx context.Context) (taskfwd.Conn, error) {
	p.mu.Lock()
	v := p.vm
	p.mu.Unlock()
	if v == nil || p.IsSet() {
		return nil, fmt.Errorf("pod %s: its VM is not running: %w", p.id, errdefs.ErrUnavailable)
	}
	c, err := p.conn.Get(func() (*agentclient.Client, error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := agentclient.Dial(dctx, v.Agent(), agentclient.Options{Alive: v.Alive})
		if err != nil {
			return nil, fmt.Errorf("pod %s: agent: %w", p.id, err)
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
