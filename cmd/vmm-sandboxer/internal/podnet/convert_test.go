package podnet

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestGuestAddrs(t *testing.T) {
	perm := unix.IFA_F_PERMANENT
	got := guestAddrs([]netlink.Addr{
		{IPNet: cidr(t, "10.88.0.5/16"), Flags: perm},
		{IPNet: cidr(t, "169.254.3.4/16")},                                      // IPv4 without lifetimes flag: kept
		{IPNet: cidr(t, "fd00::5/64"), Flags: perm},                             // static IPv6
		{IPNet: cidr(t, "fe80::1/64"), Flags: perm},                             // link-local: the guest makes its own
		{IPNet: cidr(t, "2001:db8::abcd/64"), Flags: unix.IFA_F_MANAGETEMPADDR}, // SLAAC
		{},
	})
	want := []string{"10.88.0.5/16", "169.254.3.4/16", "fd00::5/64"}
	if !slices.Equal(got, want) {
		t.Errorf("guestAddrs = %v, want %v", got, want)
	}
}

func TestGuestRoutes(t *testing.T) {
	const eth0, eth1, other = 2, 3, 9
	names := map[int]string{eth0: "eth0", eth1: "net1"}
	main := unix.RT_TABLE_MAIN
	uni := unix.RTN_UNICAST
	routes := []netlink.Route{
		// default via gateway (v4), as netlink reports it: Dst 0.0.0.0/0
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, Protocol: unix.RTPROT_BOOT, LinkIndex: eth0,
			Dst: cidr(t, "0.0.0.0/0"), Gw: net.ParseIP("10.88.0.1")},
		// the address's prefix route: made by the guest kernel
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, Protocol: unix.RTPROT_KERNEL, LinkIndex: eth0,
			Dst: cidr(t, "10.88.0.0/16"), Src: net.ParseIP("10.88.0.5"), Scope: netlink.SCOPE_LINK},
		// Calico-style link route to the gateway, listed after the default
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, Protocol: unix.RTPROT_STATIC, LinkIndex: eth0,
			Dst: cidr(t, "169.254.1.1/32"), Scope: netlink.SCOPE_LINK},
		// a route with a source and a metric, on the second interface
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, LinkIndex: eth1,
			Dst: cidr(t, "192.0.2.0/24"), Gw: net.ParseIP("198.51.100.1"), Src: net.ParseIP("198.51.100.7"), Priority: 50},
		// IPv6 default, metric 1024, and the kernel's fe80::/64 and an RA route
		{Family: netlink.FAMILY_V6, Table: main, Type: uni, Protocol: unix.RTPROT_BOOT, LinkIndex: eth0,
			Dst: cidr(t, "::/0"), Gw: net.ParseIP("fd00::1"), Priority: 1024},
		{Family: netlink.FAMILY_V6, Table: main, Type: uni, Protocol: unix.RTPROT_KERNEL, LinkIndex: eth0,
			Dst: cidr(t, "fe80::/64"), Priority: 256},
		{Family: netlink.FAMILY_V6, Table: main, Type: uni, Protocol: unix.RTPROT_RA, LinkIndex: eth0,
			Dst: cidr(t, "2001:db8:9::/64"), Priority: 100},
		// a default route straight on the link (no gateway)
		{Family: netlink.FAMILY_V6, Table: main, Type: uni, LinkIndex: eth1, Dst: cidr(t, "::/0"), Priority: 2048},
		// left out, with a reason
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, LinkIndex: other, Dst: cidr(t, "203.0.113.0/24")},
		{Family: netlink.FAMILY_V4, Table: main, Type: unix.RTN_BLACKHOLE, Dst: cidr(t, "203.0.113.0/25")},
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, Dst: cidr(t, "203.0.113.128/25"),
			MultiPath: []*netlink.NexthopInfo{{LinkIndex: eth0}, {LinkIndex: eth1}}},
		{Family: netlink.FAMILY_V4, Table: main, Type: uni, LinkIndex: eth0, Dst: cidr(t, "203.0.113.64/26"),
			Via: &netlink.Via{AddrFamily: netlink.FAMILY_V6, Addr: net.ParseIP("fd00::1")}},
		// another table: ignored
		{Family: netlink.FAMILY_V4, Table: 100, Type: uni, LinkIndex: eth0, Dst: cidr(t, "10.1.0.0/16")},
	}
	got, skipped := guestRoutes(routes, names)
	want := []*agentapi.Route{
		{Destination: "169.254.1.1/32", Device: "eth0"},
		{Destination: "::/0", Device: "net1", Metric: 2048},
		{Destination: "default", Gateway: "10.88.0.1", Device: "eth0"},
		{Destination: "192.0.2.0/24", Gateway: "198.51.100.1", Device: "net1", Source: "198.51.100.7", Metric: 50},
		{Destination: "default", Gateway: "fd00::1", Device: "eth0", Metric: 1024},
	}
	if len(got) != len(want) {
		t.Fatalf("guestRoutes = %v\nwant %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("route %d = %v, want %v", i, got[i], want[i])
		}
	}
	if len(skipped) != 4 {
		t.Fatalf("skipped = %q, want 4 reasons", skipped)
	}
	for i, why := range []string{"not through an attached interface", "not a unicast route", "multipath", "via"} {
		if !strings.Contains(skipped[i], why) {
			t.Errorf("skipped[%d] = %q, want it to say %q", i, skipped[i], why)
		}
	}
}

func TestDestination(t *testing.T) {
	for _, tc := range []struct {
		r    netlink.Route
		want string
	}{
		{netlink.Route{Family: netlink.FAMILY_V4, Gw: net.ParseIP("10.0.0.1")}, "default"},
		{netlink.Route{Family: netlink.FAMILY_V4}, "0.0.0.0/0"},
		{netlink.Route{Family: netlink.FAMILY_V6}, "::/0"},
		{netlink.Route{Family: netlink.FAMILY_V4, Dst: cidr(t, "10.1.2.0/24"), Gw: net.ParseIP("10.0.0.1")}, "10.1.2.0/24"},
		{netlink.Route{Family: netlink.FAMILY_V6, Dst: cidr(t, "fd00::/8")}, "fd00::/8"},
	} {
		if got := destination(tc.r); got != tc.want {
			t.Errorf("destination(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
