package vmmsb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/pool"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
	"github.com/magnetar-runtime/magnetar/shared/store"
)

// A pooled VM's names. Its run directory is RunDir/pool-<11 hex digits>:
// as long as a pod's (config.PodRunDirNameLen, so its sockets fit) and
// never one (a pod's is hex only). Its share is <dir>/pool/<name>/share,
// its cgroup /magnetar-vmm-pool/<name>, its taps p<hex>n<i> in the holding
// network namespace RunDir/poolns/net.
const (
	poolPrefix  = "pool-"
	poolNSDir   = "poolns"
	poolStateIn = "pool"
	// claimFile, in a pooled VM's run directory, names the sandbox that
	// took the VM: from then on the VM is that pod's, and a daemon that
	// restarts leaves it to the pod (see vmPool.reclaim).
	claimFile = "claim"
	// readyFile, in a pooled VM's run directory, says its agent answered.
	readyFile = "ready"
	// poolEntropyBytes are sent to a pooled guest at its claim.
	poolEntropyBytes = 64
	// poolAgentMinor is the agent protocol's minor version that has
	// Interface.set_hw_addr and SetupRequest.entropy.
	poolAgentMinor = 1
)

// poolCgroupRoot is the cgroup of the pool's VMs until a pod takes one.
var poolCgroupRoot = Handler + "-pool"

// vmPool is the daemon's warm pool: what it keeps ready (pool, nil when
// [pool] keeps nothing) and what a restarted daemon finds of an earlier
// one's.
type vmPool struct {
	d    *driver
	pool *pool.Pool
	// hold is the holding network namespace of the pooled VMs' taps.
	hold string
}

// pooledVM is a VM booted ahead of its pod.
type pooledVM struct {
	name   string
	shape  pool.Shape
	runDir string
	dir    string // <state dir>/pool/<name>
	share  string
	cgroup string
	taps   []string
	macs   []net.HardwareAddr
	vm     vm.VM
	cl     *agentclient.Client
	p      *vmPool
}

func (v *pooledVM) Done() <-chan struct{} { return v.vm.Done() }

// Destroy ends the VM and removes everything of it.
func (v *pooledVM) Destroy(ctx context.Context) error {
	if v.cl != nil {
		_ = v.cl.Close()
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	if err := v.vm.Stop(sctx, true); err != nil {
		errs = append(errs, err)
	}
	if err := v.vm.Cleanup(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, v.p.remove(ctx, v.name))
	return errors.Join(errs...)
}

// newPool starts the pool of cfg.Pool (none when it keeps nothing), after
// removing what a previous daemon's pool left (sweep).
func newPool(d *driver) (*vmPool, error) {
	ctx := d.env.Life
	p := &vmPool{d: d, hold: filepath.Join(d.cfg.RunDir, poolNSDir, string(nsutil.KindNet))}
	p.sweep(ctx)
	sizes := map[pool.Shape]int{}
	for _, s := range d.cfg.Pool.Shapes {
		r := d.cfg.ResolvedShape(s)
		if r.Size > 0 {
			sizes[pool.Shape{Hypervisor: r.Hypervisor, VCPUs: r.VCPUs, MemoryMiB: r.MemoryMiB}] = r.Size
		}
	}
	if len(sizes) == 0 {
		return p, nil
	}
	if _, err := nsutil.Create(ctx, filepath.Dir(p.hold), []nsutil.Kind{nsutil.KindNet}, ""); err != nil {
		return nil, fmt.Errorf("pool: holding network namespace: %w", err)
	}
	p.pool = pool.New(ctx, pool.Config{Sizes: sizes, MaxMemoryMiB: d.cfg.Pool.MaxMemoryMiB, Concurrency: d.cfg.Pool.RefillConcurrency}, p.boot)
	log.G(ctx).WithField("shapes", fmt.Sprint(sizes)).Info("warm pool on")
	return p, nil
}

// Close drops the pool when the daemon stops (daemon.Closer).
func (d *driver) Close(ctx context.Context) error { return d.pool.Close(ctx) }

// Close drops the pool: its ready VMs are destroyed (pods keep theirs).
func (p *vmPool) Close(ctx context.Context) error {
	if p.pool == nil {
		return nil
	}
	err := p.pool.Close(ctx)
	return errors.Join(err, nsutil.Release(filepath.Dir(p.hold)))
}

// hold keeps the pool from booting while a pod starts (see pool.Hold).
func (p *vmPool) holdStart() func() {
	if p.pool == nil {
		return func() {}
	}
	return p.pool.Hold()
}

// take hands out a ready VM of the shape, nil when there is none.
func (p *vmPool) take(s pool.Shape) *pooledVM {
	if p.pool == nil {
		return nil
	}
	if it := p.pool.Take(s); it != nil {
		return it.(*pooledVM)
	}
	return nil
}

// boot starts a VM of shape s with a share, taps and a cgroup of its own,
// and returns it once its agent answers. On error nothing of it is left.
func (p *vmPool) boot(ctx context.Context, s pool.Shape) (_ pool.Item, retErr error) {
	d := p.d
	b, err := d.backend(s.Hypervisor)
	if err != nil {
		return nil, err
	}
	bins, err := b.ready()
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	hexs := hex.EncodeToString(suffix)[:config.PodRunDirNameLen-len(poolPrefix)]
	v := &pooledVM{name: poolPrefix + hexs, shape: s, p: p}
	v.runDir = filepath.Join(d.cfg.RunDir, v.name)
	v.dir = filepath.Join(d.env.Dir, poolStateIn, v.name)
	v.share = filepath.Join(v.dir, "share")
	v.cgroup = cgroups.PodPath(poolCgroupRoot, "", v.name)
	defer func() {
		if retErr != nil {
			if v.cl != nil {
				_ = v.cl.Close()
			}
			if v.vm != nil {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				_ = v.vm.Stop(sctx, true)
				cancel()
				_ = v.vm.Cleanup()
			}
			_ = p.remove(context.WithoutCancel(ctx), v.name)
		}
	}()
	if err := os.MkdirAll(v.runDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(v.share, podFilesDir), 0o711); err != nil {
		return nil, err
	}
	if _, err := cgroups.New(v.cgroup); err != nil {
		return nil, fmt.Errorf("pool cgroup %s: %w", v.cgroup, err)
	}
	// one NIC: the pod interface CNI makes
	v.taps = []string{"p" + hexs + "n0"}
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, err
	}
	mac[0] = mac[0]&0xfc | 0x02 // unicast, locally administered
	v.macs = []net.HardwareAddr{mac}
	files, err := d.net.HoldTaps(ctx, p.hold, v.taps)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	cfg := d.vmConfig(v.name, v.runDir, v.share, v.cgroup, s.VCPUs, s.MemoryMiB, b, bins)
	for i, f := range files {
		cfg.NICs = append(cfg.NICs, vm.NIC{Tap: f, TapName: v.taps[i], MAC: v.macs[i].String(), MTU: 1500})
	}
	if v.vm, err = b.hv.Start(ctx, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	bctx, cancel := context.WithTimeout(ctx, time.Duration(d.cfg.VM.BootTimeout))
	defer cancel()
	if v.cl, err = agentclient.Dial(bctx, v.vm.Agent(), agentclient.Options{Alive: v.vm.Alive}); err != nil {
		return nil, fmt.Errorf("pool VM %s: %w\nguest console (last lines):\n%s", v.name, err, v.vm.ConsoleTail(25))
	}
	// a pooled guest takes its pod's MACs and fresh entropy at the claim
	if h := v.cl.Health(); h.GetMinor() < poolAgentMinor {
		return nil, fmt.Errorf("pool VM %s: the guest agent speaks protocol %s, the pool needs 1.%d (set_hw_addr, entropy): rebuild the guest image: %w",
			v.name, h.GetVersion(), poolAgentMinor, errdefs.ErrFailedPrecondition)
	}
	// for whoever looks at the host: this one waits for a pod
	if err := os.WriteFile(filepath.Join(v.runDir, readyFile), nil, 0o600); err != nil {
		return nil, err
	}
	return v, nil
}

// claim marks v as the pod id's: written before anything of the pod
// touches it, so that a daemon that dies during the claim leaves the VM to
// that pod's Stop (reclaim) rather than to the next start's sweep.
func (v *pooledVM) claim(id string) error {
	return store.WriteFileAtomic(filepath.Join(v.runDir, claimFile), []byte(id), 0o600)
}

// moveCgroup moves every process of v's cgroup into the cgroup path (the
// pod's), then removes v's.
func (v *pooledVM) moveCgroup(path string) error {
	cg, err := cgroups.Load(path)
	if err != nil {
		return err
	}
	pids, err := cgroups.Procs(v.cgroup)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := cg.AddProc(pid); err != nil {
			return fmt.Errorf("move pid %d of pool VM %s into %s: %w", pid, v.name, path, err)
		}
	}
	if err := cgroups.Delete(v.cgroup); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// remove ends the processes of the pooled VM name and removes what it had
// on the host: run directory, share (its bind first), state directory,
// cgroup. Idempotent.
func (p *vmPool) remove(ctx context.Context, name string) error {
	runDir := filepath.Join(p.d.cfg.RunDir, name)
	dir := filepath.Join(p.d.env.Dir, poolStateIn, name)
	killProcessesOf(ctx, runDir)
	var errs []error
	if err := virtiofsd.ReleaseShare(filepath.Join(dir, "share")); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []string{runDir, dir} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cgroups.Destroy(cgroups.PodPath(poolCgroupRoot, "", name), 5*time.Second); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// poolNames lists the pooled VMs the host has: run and state directories.
func (p *vmPool) poolNames() []string {
	set := map[string]bool{}
	for _, dir := range []string{p.d.cfg.RunDir, filepath.Join(p.d.env.Dir, poolStateIn)} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), poolPrefix) && e.IsDir() {
				set[e.Name()] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	return out
}

// claimOf is the sandbox that claimed the pooled VM name, "" when none.
func (p *vmPool) claimOf(name string) string {
	b, err := os.ReadFile(filepath.Join(p.d.cfg.RunDir, name, claimFile))
	if err != nil {
		return ""
	}
	return string(b)
}

// sweep removes what a previous daemon's pool left: every pooled VM no pod
// claimed (a daemon killed with a full pool), and the holding namespace.
// A claimed one is its pod's: recovered with it, or ended by its Stop.
func (p *vmPool) sweep(ctx context.Context) {
	for _, name := range p.poolNames() {
		if id := p.claimOf(name); id != "" {
			continue
		}
		log.G(ctx).WithField("pool_vm", name).Info("pool: removing a VM a previous daemon left")
		if err := p.remove(ctx, name); err != nil {
			log.G(ctx).WithError(err).WithField("pool_vm", name).Warn("pool: removing a VM a previous daemon left")
		}
	}
	if err := nsutil.Release(filepath.Dir(p.hold)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("pool: releasing the holding network namespace")
	}
}

// reclaim removes the pooled VMs the pod id claimed without recording
// them (a daemon that died during the pod's start).
func (p *vmPool) reclaim(ctx context.Context, id string) {
	for _, name := range p.poolNames() {
		if p.claimOf(name) == id {
			log.G(ctx).WithFields(log.Fields{"sandbox_id": id, "pool_vm": name}).Warn("removing a pool VM a start cut short had claimed")
			if err := p.remove(ctx, name); err != nil {
				log.G(ctx).WithError(err).WithField("pool_vm", name).Warn("removing a claimed pool VM")
			}
		}
	}
}

var _ daemon.Closer = (*driver)(nil)
