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
func TestNetlinkInANewNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its netns
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := LoopbackUp(); err != nil {
			t.Errorf("lo up: %v", err)
			return
		}
		s := &System{}
		l := service.Link{Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("10.123.0.1/16"), netip.MustParsePrefix("fd00:1::1/64")}, MTU: 9000}
		if err := s.ConfigureLink(l); err != nil {
			t.Errorf("configure: %v", err)
			return
		}
		if err := s.ConfigureLink(l); err != nil { // idempotent
			t.Errorf("configure again: %v", err)
			return
		}
		if err := s.AddRoute(service.RouteSpec{Dst: netip.MustParsePrefix("10.124.0.0/16"), Device: "lo"}); err != nil {
			t.Errorf("route: %v", err)
			return
		}
		if err := s.AddRoute(service.RouteSpec{Default: true, Gateway: netip.MustParseAddr("10.123.0.2"), Device: "lo", Metric: 10}); err != nil {
			t.Errorf("default route: %v", err)
			return
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Error(err)
			return
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
			return
		}
		c.Close()
		if _, err := net.Dial("udp", "192.0.2.1:9"); err != nil {
			t.Errorf("default route missing: %v", err)
		}
	}()
	<-done
}
