package vmmsb

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/pool"
	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// These tests boot real pooled VMs (see integration_test.go).

var poolShape = pool.Shape{Hypervisor: HypervisorQEMU, VCPUs: 1, MemoryMiB: 256}

func poolRig(t *testing.T, size int) *rig {
	r := newRig(t, func(c *Config) {
		c.Pool.Shapes = []PoolShape{{Size: size}}
	})
	// a test that fails half-way leaves no pool VM (the last daemon's
	// pool; the sweep of a restart took the earlier ones')
	t.Cleanup(func() {
		_ = r.drv.Close(context.Background())
		for _, p := range proc.Find(proc.Naming(filepath.Join(r.cfg.RunDir, poolPrefix))) {
			_ = unix.Kill(p.PID, unix.SIGKILL)
		}
	})
	return r
}

// waitPool waits until the rig's pool holds n ready VMs.
func (r *rig) waitPool(n int) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := r.drv.pool.pool.Stats()[poolShape]
		if st.Ready == n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("pool: %+v, want %d ready", st, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vethPod is a pod netns with eth0 (10.99.0.2/24) whose peer (10.99.0.1/24)
// is in a netns of its own, as CNI's bridge would leave it.
type vethPod struct {
	pod, peer string
	podMAC    net.HardwareAddr
}

func newVethPod(t *testing.T) *vethPod {
	t.Helper()
	v := &vethPod{pod: newNetNS(t), peer: newNetNS(t)}
	pf, err := os.Open(v.peer)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	up := func(h *netlink.Handle, name, cidr string) (net.HardwareAddr, error) {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, err
		}
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return nil, err
		}
		if err := h.AddrAdd(l, a); err != nil {
			return nil, err
		}
		return l.Attrs().HardwareAddr, h.LinkSetUp(l)
	}
	inNetNS(t, v.pod, func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0",
			PeerNamespace: netlink.NsFd(int(pf.Fd()))}); err != nil {
			return err
		}
		v.podMAC, err = up(h, "eth0", "10.99.0.2/24")
		return err
	})
	inNetNS(t, v.peer, func(h *netlink.Handle) error {
		_, err := up(h, "peer0", "10.99.0.1/24")
		return err
	})
	return v
}

func inNetNS(t *testing.T, path string, fn func(h *netlink.Handle) error) {
	t.Helper()
	if err := nsutil.Do(path, nsutil.KindNet, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	}); err != nil {
		t.Fatal(err)
	}
}

// guestMAC is the MAC that answers for the pod's address on the wire: a
// TCP connection from the peer (refused by the guest's kernel: the pod
// netns' own stack sees nothing past the redirect) fills the peer's
// neighbour table.
func (v *vethPod) guestMAC(t *testing.T) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	inNetNS(t, v.peer, func(h *netlink.Handle) error {
		var err error
		for i := 0; i < 20 && mac == nil; i++ {
			c, derr := net.DialTimeout("tcp", "10.99.0.2:9", time.Second)
			if derr == nil {
				c.Close()
			}
			err = derr
			ns, _ := h.NeighList(0, netlink.FAMILY_V4)
			for _, n := range ns {
				if n.IP.Equal(net.IPv4(10, 99, 0, 2)) && len(n.HardwareAddr) == 6 {
					mac = n.HardwareAddr
				}
			}
		}
		if mac == nil {
			t.Errorf("no answer from the guest at 10.99.0.2 (last dial: %v)", err)
		}
		return nil
	})
	return mac
}

func (r *rig) createIn(id, netns string) {
	r.t.Helper()
	if _, err := r.ctrl.Create(context.Background(), &sandboxapi.ControllerCreateRequest{SandboxID: id, NetnsPath: netns, Options: podOptions(r.t, id)}); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		_, _ = r.ctrl.Shutdown(context.Background(), &sandboxapi.ControllerShutdownRequest{SandboxID: id})
	})
}

func (r *rig) status(id string) map[string]string {
	r.t.Helper()
	st, err := r.ctrl.Status(context.Background(), &sandboxapi.ControllerStatusRequest{SandboxID: id, Verbose: true})
	if err != nil {
		r.t.Fatal(err)
	}
	if st.State != controller.StateReady {
		r.t.Fatalf("%s: %s, want ready", id, st.State)
	}
	return st.Info
}

// poolVMs are the pooled VMs' QEMU processes.
func (r *rig) poolVMs() []proc.Process {
	return proc.Find(func(args []string) bool {
		return proc.Naming(filepath.Join(r.cfg.RunDir, poolPrefix))(args) && strings.Contains(strings.Join(args, " "), "guest=")
	})
}

// TestVMPool: a pod takes a ready VM from the pool (its network, MAC,
// cgroup and share are the pod's), the pool refills; a pod the pool cannot
// serve (no interface) boots its own; a restarted daemon keeps the claimed
// VM and removes the unclaimed one an earlier daemon left; closing the pool
// and removing the pod leave nothing.
func TestVMPool(t *testing.T) {
	r := poolRig(t, 1)
	ctx := context.Background()
	r.waitPool(1)
	first := r.poolVMs()
	if len(first) != 1 {
		t.Fatalf("%d pool VMs running, want 1", len(first))
	}

	vp := newVethPod(t)
	r.createIn("warm", vp.pod)
	t0 := time.Now()
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "warm"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("RunPodSandbox from the pool: %v", time.Since(t0))
	info := r.status("warm")
	if info["pool_vm"] == "" || info["vmm_pid"] != strconv.Itoa(first[0].PID) {
		t.Fatalf("pod info %v: want the pool VM (QEMU %d)", info, first[0].PID)
	}
	// the guest answers for the pod's address with the pod's MAC
	if mac := vp.guestMAC(t); mac.String() != vp.podMAC.String() {
		t.Errorf("the guest answers with MAC %v, want the pod veth's %v", mac, vp.podMAC)
	}
	// QEMU is in the pod's cgroup now
	cg, _ := os.ReadFile("/proc/" + info["vmm_pid"] + "/cgroup")
	if !strings.Contains(string(cg), "magnetar-vmm-warm") || strings.Contains(string(cg), poolCgroupRoot) {
		t.Errorf("QEMU's cgroups after the claim:\n%s", cg)
	}
	// the pod's files are in the share the guest has
	inst, _, _ := r.ctrl.Pod("warm")
	host, _ := inst.(taskfwd.Guest).Share()
	if b, err := os.ReadFile(filepath.Join(host, podFilesDir, "hostname")); err != nil || strings.TrimSpace(string(b)) != "warm" {
		t.Errorf("pod hostname file in the pool VM's share %s: %q %v", host, b, err)
	}
	r.waitPool(1) // refilled

	// no interface: the pool VM does not fit; the pod boots its own
	r.createIn("cold", newNetNS(t))
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "cold"}); err != nil {
		t.Fatal(err)
	}
	if info := r.status("cold"); info["pool_vm"] != "" {
		t.Errorf("a pod without interfaces took pool VM %s", info["pool_vm"])
	}
	r.waitPool(1)
	left := r.poolVMs()

	// a daemon killed with a ready VM: the next one removes it and keeps
	// the claimed one
	if old, _, err := r.ctrl.Pod("warm"); err == nil {
		old.(*pod).conn.Close()
	}
	if old, _, err := r.ctrl.Pod("cold"); err == nil {
		old.(*pod).conn.Close()
	}
	r.stop() // the first daemon dies
	life2, cancel := context.WithCancel(ctx)
	defer cancel()
	r.open(life2)
	for _, p := range left {
		if p.PID == first[0].PID {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(p.PID)); err == nil {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline"); strings.Contains(string(b), r.cfg.RunDir) {
				t.Errorf("the earlier daemon's ready pool VM (QEMU %d) survived the restart", p.PID)
			}
		}
	}
	if info := r.status("warm"); info["vmm_pid"] != strconv.Itoa(first[0].PID) {
		t.Errorf("the claimed VM after the restart: %v", info)
	}
	inst, _, _ = r.ctrl.Pod("warm")
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if _, err := inst.(taskfwd.Guest).Conn(cctx); err != nil {
		t.Fatalf("agent of the claimed VM after the restart: %v", err)
	}
	r.waitPool(1)

	// the daemon stops: the pool goes, the pods stay
	if err := r.drv.Close(ctx); err != nil {
		t.Error(err)
	}
	if n := len(r.poolVMs()); n != 1 {
		t.Errorf("%d pool-born VMs after Close, want 1 (the pod's)", n)
	}
	r.status("warm")
	for _, id := range []string{"warm", "cold"} {
		if _, err := r.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: id, TimeoutSecs: 5}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if left := r.leftovers("warm"); len(left) > 0 {
		t.Errorf("left after shutdown: %v", left)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.dir, poolStateIn)); len(ents) > 0 {
		t.Errorf("pool state left: %s", ents[0].Name())
	}
}

// TestVMPoolClaimCut: a daemon that dies right after claiming a pool VM
// (before the pod's network or cgroup) leaves it to the pod's Stop.
func TestVMPoolClaimCut(t *testing.T) {
	r := poolRig(t, 1)
	ctx := context.Background()
	r.waitPool(1)
	vp := newVethPod(t)
	r.createIn("cut", vp.pod)
	// what a kill at vmm.pool.claimed leaves: the VM claimed, the pod
	// record in phase starting
	v := r.drv.pool.take(poolShape)
	if v == nil {
		t.Fatal("no pool VM")
	}
	if err := v.claim("cut"); err != nil {
		t.Fatal(err)
	}
	_ = v.cl.Close()
	r.stop() // the daemon dies
	life2, cancel := context.WithCancel(ctx)
	defer cancel()
	r.open(life2) // its sweep leaves the claimed VM alone
	if _, err := os.Stat(v.runDir); err != nil {
		t.Fatalf("the restarted daemon removed a claimed VM: %v", err)
	}
	if _, err := r.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "cut"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v.runDir); err == nil {
		t.Error("the pod's Stop left the VM it had claimed")
	}
	for _, p := range proc.Find(proc.Naming(v.runDir + "/")) {
		t.Errorf("process of the claimed VM left: %d %s", p.PID, p.Line())
	}
	_ = r.drv.Close(ctx)
	r.shutdown("cut")
}
