package guest

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/agent/internal/service"
)

// TestNetlinkInANewNetns configures lo in a private network namespace
// (root only): up, an address, a route, all through our rtnetlink client.
// inNewNetns runs fn on a thread of its own in a new network namespace;
// the thread ends with it. fn's return, when not empty, skips the test.
func inNewNetns(t *testing.T, fn func() (skip string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	skip := ""
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its netns
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		skip = fn()
	}()
	<-done
	if skip != "" {
		t.Skip(skip)
	}
}

func TestNetlinkInANewNetns(t *testing.T) {
	inNewNetns(t, func() string {
		if err := LoopbackUp(); err != nil {
			t.Errorf("lo up: %v", err)
			return ""
		}
		s := &System{}
		l := service.Link{Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("10.123.0.1/16"), netip.MustParsePrefix("fd00:1::1/64")}, MTU: 9000}
		if err := s.ConfigureLink(l); err != nil {
			t.Errorf("configure: %v", err)
			return ""
		}
		if err := s.ConfigureLink(l); err != nil { // idempotent
			t.Errorf("configure again: %v", err)
			return ""
		}
		if err := s.AddRoute(service.RouteSpec{Dst: netip.MustParsePrefix("10.124.0.0/16"), Device: "lo"}); err != nil {
			t.Errorf("route: %v", err)
			return ""
		}
		if err := s.AddRoute(service.RouteSpec{Default: true, Gateway: netip.MustParseAddr("10.123.0.2"), Device: "lo", Metric: 10}); err != nil {
			t.Errorf("default route: %v", err)
			return ""
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Error(err)
			return ""
		}
		addrs, _ := lo.Addrs()
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if lo.Flags&net.FlagUp == 0 || lo.MTU != 9000 || !strings.Contains(strings.Join(got, " "), "10.123.0.1/16") {
			t.Errorf("lo: flags %v mtu %d addrs %v", lo.Flags, lo.MTU, got)
		}
		// the routes answer: 10.124.x goes out lo (connect on UDP picks a source)
		c, err := net.Dial("udp", "10.124.0.9:9")
		if err != nil {
			t.Errorf("no route to 10.124.0.9: %v", err)
			return ""
		}
		c.Close()
		if _, err := net.Dial("udp", "192.0.2.1:9"); err != nil {
			t.Errorf("default route missing: %v", err)
		}
		return ""
	})
}

// addVeth creates a veth pair (a NIC with a MAC of its own, as a VM of the
// warm pool has) with our rtnetlink client.
func addVeth(c *nlConn, name, peer string) error {
	const vethInfoPeer = 1 // VETH_INFO_PEER: not in x/sys/unix
	p := &nlMsg{body: ifinfomsg(0, 0, 0)}
	p.attr(unix.IFLA_IFNAME, append([]byte(peer), 0))
	data := &nlMsg{}
	data.attr(vethInfoPeer, p.body)
	info := &nlMsg{}
	info.attr(unix.IFLA_INFO_KIND, []byte("veth"))
	info.attr(unix.IFLA_INFO_DATA, data.body)
	m := &nlMsg{typ: unix.RTM_NEWLINK, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, body: ifinfomsg(0, 0, 0)}
	m.attr(unix.IFLA_IFNAME, append([]byte(name), 0))
	m.attr(unix.IFLA_LINKINFO, info.body)
	return c.do(m)
}

// TestConfigureLinkSetsTheMAC (root only, in a private network namespace):
// a link found by its own MAC, up already, gets the pod's MAC, then its
// name, MTU and address, and comes up; a retried Setup finds it by the new
// MAC.
func TestConfigureLinkSetsTheMAC(t *testing.T) {
	inNewNetns(t, func() string {
		c, err := openNetlink()
		if err != nil {
			t.Error(err)
			return ""
		}
		defer c.Close()
		if err := addVeth(c, "vm0", "vm0p"); err != nil {
			return "no veth links in this kernel: " + err.Error()
		}
		vm0, err := net.InterfaceByName("vm0")
		if err != nil {
			t.Error(err)
			return ""
		}
		if err := c.setLink(vm0.Index, "", 0); err != nil {
			t.Errorf("vm0 up: %v", err)
			return ""
		}
		podMAC, _ := net.ParseMAC("02:42:ac:11:00:02")
		l := service.Link{Name: "eth1", MAC: vm0.HardwareAddr, SetMAC: podMAC, MTU: 1400,
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.88.0.5/16")}}
		s := &System{}
		if err := s.ConfigureLink(l); err != nil {
			t.Errorf("configure: %v", err)
			return ""
		}
		if err := s.ConfigureLink(l); err != nil {
			t.Errorf("configure again (the host retries Setup): %v", err)
			return ""
		}
		eth1, err := net.InterfaceByName("eth1")
		if err != nil {
			t.Errorf("not renamed: %v", err)
			return ""
		}
		addrs, _ := eth1.Addrs()
		if eth1.Index != vm0.Index || eth1.HardwareAddr.String() != podMAC.String() || eth1.Flags&net.FlagUp == 0 ||
			eth1.MTU != 1400 || len(addrs) == 0 || addrs[0].String() != "10.88.0.5/16" {
			t.Errorf("eth1: index %d (vm0 was %d) MAC %s flags %v mtu %d addrs %v", eth1.Index, vm0.Index, eth1.HardwareAddr, eth1.Flags, eth1.MTU, addrs)
		}
		if _, err := linkByMAC(vm0.HardwareAddr); err == nil {
			t.Errorf("a link still has the old MAC %s", vm0.HardwareAddr)
		}
		return ""
	})
}
