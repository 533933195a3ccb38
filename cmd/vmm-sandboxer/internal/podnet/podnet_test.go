package podnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
)

// These tests make their own network namespaces and create every interface
// inside them (a veth's peer is created straight in the peer namespace), so
// the host's namespace and interfaces are never touched.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces, interfaces and qdiscs")
	}
}

// newNetNS makes a network namespace held by a bind mount on a file in a
// test directory, and removes it when the test ends.
func newNetNS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "net")
	if err := os.WriteFile(p, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("/proc/thread-self/ns/net", p, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("make a network namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	return p
}

// inNS runs fn with a netlink handle inside the namespace at path.
func inNS(t *testing.T, path string, fn func(h *netlink.Handle) error) {
	t.Helper()
	err := nsutil.Do(path, nsutil.KindNet, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// end is one end of a test veth.
type end struct {
	name  string
	mtu   int
	addrs []string // CIDR
}

// addVeth creates a veth with pod in the namespace podNS and peer in
// peerNS, both up with their addresses, and returns the pod end's and the
// peer end's MACs.
func addVeth(t *testing.T, podNS, peerNS string, pod, peer end) (podMAC, peerMAC net.HardwareAddr) {
	t.Helper()
	pf, err := os.Open(peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	up := func(h *netlink.Handle, e end) (net.HardwareAddr, error) {
		l, err := h.LinkByName(e.name)
		if err != nil {
			return nil, err
		}
		for _, a := range e.addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return nil, err
			}
			if addr.IP.To4() == nil {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, addr); err != nil {
				return nil, err
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return nil, err
		}
		return l.Attrs().HardwareAddr, nil
	}
	inNS(t, podNS, func(h *netlink.Handle) error {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: pod.name, MTU: pod.mtu},
			PeerName:      peer.name,
			PeerNamespace: netlink.NsFd(int(pf.Fd())),
			PeerMTU:       uint32(pod.mtu),
		}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		podMAC, err = up(h, pod)
		return err
	})
	inNS(t, peerNS, func(h *netlink.Handle) error {
		peerMAC, err = up(h, peer)
		return err
	})
	return podMAC, peerMAC
}

// addRoutes adds routes in the namespace at path (Dst "" is default).
func addRoutes(t *testing.T, path string, routes ...netlink.Route) {
	t.Helper()
	inNS(t, path, func(h *netlink.Handle) error {
		for _, r := range routes {
			if err := h.RouteAdd(&r); err != nil {
				return err
			}
		}
		return nil
	})
}

// tcState is what the namespace holds of Attach's work.
type tcState struct {
	links    map[string]netlink.Link
	ingress  map[string]bool   // link name → has an ingress qdisc
	redirect map[string]string // link name → where its filter at filterPriority redirects
}

func inspect(t *testing.T, path string) tcState {
	t.Helper()
	s := tcState{links: map[string]netlink.Link{}, ingress: map[string]bool{}, redirect: map[string]string{}}
	inNS(t, path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		byIndex := map[int]string{}
		for _, l := range links {
			s.links[l.Attrs().Name] = l
			byIndex[l.Attrs().Index] = l.Attrs().Name
		}
		for _, l := range links {
			q, err := ingressQdisc(h, l)
			if err != nil {
				return err
			}
			if q == nil {
				continue
			}
			s.ingress[l.Attrs().Name] = true
			fs, err := h.FilterList(l, filterParent)
			if err != nil {
				return err
			}
			for _, f := range fs {
				u, ok := f.(*netlink.U32)
				if !ok || f.Attrs().Priority != filterPriority || f.Attrs().Protocol != unix.ETH_P_ALL {
					continue
				}
				for _, a := range u.Actions {
					if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
						s.redirect[l.Attrs().Name] = byIndex[m.Ifindex]
					}
				}
			}
		}
		return nil
	})
	return s
}

// assertDetached checks that none of Attach's work is left on the named
// pod interfaces.
func assertDetached(t *testing.T, path string, pod ...string) {
	t.Helper()
	s := inspect(t, path)
	for name, l := range s.links {
		if l.Type() == "tuntap" {
			t.Errorf("tap %s left in the namespace", name)
		}
	}
	for _, name := range pod {
		if s.ingress[name] {
			t.Errorf("ingress qdisc left on %s", name)
		}
		if to, ok := s.redirect[name]; ok {
			t.Errorf("redirect filter %s -> %s left", name, to)
		}
	}
}

// podNet is a pod namespace with eth0 (IPv4 and IPv6, MTU 1400, routes)
// whose veth peer, peer0, is in a peer namespace; plus spare0, a veth end
// without addresses that Attach must leave alone.
type podNet struct {
	pod, peer        string
	podMAC, peerMAC  net.HardwareAddr
	podIP, peerIP    net.IP
	podIPv6, peerIP6 string
}

func newPodNet(t *testing.T) *podNet {
	t.Helper()
	p := &podNet{
		pod: newNetNS(t), peer: newNetNS(t),
		podIP: net.IPv4(198, 51, 100, 2).To4(), peerIP: net.IPv4(198, 51, 100, 1).To4(),
		podIPv6: "2001:db8:4d47::2/64", peerIP6: "2001:db8:4d47::1/64",
	}
	p.podMAC, p.peerMAC = addVeth(t, p.pod, p.peer,
		end{name: "eth0", mtu: 1400, addrs: []string{"198.51.100.2/24", p.podIPv6}},
		end{name: "peer0", addrs: []string{"198.51.100.1/24", p.peerIP6}})
	addVeth(t, p.pod, p.peer, end{name: "spare0"}, end{name: "spare0p"})

	var eth0 int
	inNS(t, p.pod, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		eth0 = l.Attrs().Index
		return err
	})
	_, linkDst, _ := net.ParseCIDR("203.0.113.0/24")
	addRoutes(t, p.pod,
		netlink.Route{LinkIndex: eth0, Gw: p.peerIP},
		netlink.Route{LinkIndex: eth0, Dst: linkDst, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC},
		netlink.Route{LinkIndex: eth0, Gw: net.ParseIP("2001:db8:4d47::1")},
	)
	return p
}

func TestAttachDetach(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	p := newPodNet(t)

	n, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	// What Attach reports.
	if len(n.Links) != 1 {
		t.Fatalf("links = %+v, want eth0 only", n.Links)
	}
	l := n.Links[0]
	if l.Name != "eth0" || l.Tap != "tap0_mg" || l.MTU != 1400 || !bytes.Equal(l.MAC, p.podMAC) || l.TapFile == nil {
		t.Errorf("link = %+v, want eth0/tap0_mg, MTU 1400, MAC %s, an open tap", l, p.podMAC)
	}
	if want := []string{"198.51.100.2/24", p.podIPv6}; !sameSet(l.Addresses, want) {
		t.Errorf("addresses = %v, want %v", l.Addresses, want)
	}
	wantRoutes := []*agentapi.Route{
		{Destination: "203.0.113.0/24", Device: "eth0"},
		{Destination: "default", Gateway: "198.51.100.1", Device: "eth0"},
		{Destination: "default", Gateway: "2001:db8:4d47::1", Device: "eth0", Metric: 1024},
	}
	if len(n.Routes) != len(wantRoutes) {
		t.Fatalf("routes = %v, want %v", n.Routes, wantRoutes)
	}
	for i := range wantRoutes {
		if !proto.Equal(n.Routes[i], wantRoutes[i]) {
			t.Errorf("route %d = %v, want %v", i, n.Routes[i], wantRoutes[i])
		}
	}
	ifs := n.Interfaces()
	if len(ifs) != 1 || ifs[0].GetName() != "eth0" || ifs[0].GetHwAddr() != p.podMAC.String() || ifs[0].GetMtu() != 1400 ||
		len(ifs[0].GetAddresses()) != 2 {
		t.Errorf("interfaces = %v", ifs)
	}

	// What the namespace holds.
	s := inspect(t, p.pod)
	tap, ok := s.links["tap0_mg"].(*netlink.Tuntap)
	if !ok {
		t.Fatalf("tap0_mg is %T, want a tap", s.links["tap0_mg"])
	}
	if tap.Mode != netlink.TUNTAP_MODE_TAP || tap.Flags&netlink.TUNTAP_NO_PI == 0 || tap.Flags&netlink.TUNTAP_VNET_HDR == 0 ||
		!tap.NonPersist || tap.MTU != 1400 || tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("tap0_mg = mode %v flags %#x non-persistent %v MTU %d up %v; want an up, non-persistent tap, no_pi, vnet_hdr, MTU 1400",
			tap.Mode, tap.Flags, tap.NonPersist, tap.MTU, tap.Attrs().Flags&net.FlagUp != 0)
	}
	if !s.ingress["eth0"] || !s.ingress["tap0_mg"] || s.ingress["spare0"] {
		t.Errorf("ingress qdiscs = %v, want eth0 and tap0_mg", s.ingress)
	}
	if s.redirect["eth0"] != "tap0_mg" || s.redirect["tap0_mg"] != "eth0" || len(s.redirect) != 2 {
		t.Errorf("redirects = %v, want eth0 <-> tap0_mg", s.redirect)
	}
	if _, err := net.InterfaceByName("tap0_mg"); err == nil {
		t.Error("tap0_mg visible in the host's namespace")
	}

	// Traffic flows both ways: the peer's kernel answers what the "guest"
	// writes into the tap, and its answers come out of the tap.
	proveTraffic(t, p, l.TapFile)

	// Detach from persisted state, with the tap still held (a VMM that
	// has not exited yet).
	b, err := json.Marshal(n.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if want := (State{NetNS: p.pod, Links: []LinkState{{Name: "eth0", Tap: "tap0_mg", OwnQdisc: true}}}); !stateEqual(st, want) {
		t.Errorf("state = %+v, want %+v", st, want)
	}
	if err := Detach(ctx, st); err != nil {
		t.Fatal(err)
	}
	assertDetached(t, p.pod, "eth0")
	if _, ok := inspect(t, p.pod).links["eth0"]; !ok {
		t.Error("eth0 was removed")
	}
	if err := Detach(ctx, st); err != nil {
		t.Errorf("second Detach = %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	// Attach again after Detach: same names.
	n2, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if len(n2.Links) != 1 || n2.Links[0].Tap != "tap0_mg" {
		t.Errorf("second Attach = %+v", n2.Links)
	}
	if err := Detach(ctx, n2.State()); err != nil {
		t.Fatal(err)
	}
	assertDetached(t, p.pod, "eth0")
}

// TestTapGoesWithItsLastDescriptor checks that the tap is not persistent: a
// VMM that exits takes it away, and Detach then cleans up the rest.
func TestTapGoesWithItsLastDescriptor(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	p := newPodNet(t)
	n, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := inspect(t, p.pod).links["tap0_mg"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tap0_mg still there after its only descriptor was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := inspect(t, p.pod); !s.ingress["eth0"] {
		t.Error("eth0's qdisc went with the tap")
	}
	if err := Detach(ctx, n.State()); err != nil {
		t.Fatal(err)
	}
	assertDetached(t, p.pod, "eth0")
}

func TestAttachRollback(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	p := newPodNet(t)
	mac1, _ := addVeth(t, p.pod, p.peer,
		end{name: "net1", addrs: []string{"192.0.2.2/24"}}, end{name: "peer1", addrs: []string{"192.0.2.1/24"}})

	// Both interfaces are taken, in ifindex order.
	n, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Links) != 2 || n.Links[0].Name != "eth0" || n.Links[0].Tap != "tap0_mg" ||
		n.Links[1].Name != "net1" || n.Links[1].Tap != "tap1_mg" || !bytes.Equal(n.Links[1].MAC, mac1) {
		t.Fatalf("links = %+v, want eth0/tap0_mg, net1/tap1_mg", n.Links)
	}
	if s := inspect(t, p.pod); s.redirect["net1"] != "tap1_mg" || s.redirect["tap1_mg"] != "net1" {
		t.Errorf("redirects = %v", s.redirect)
	}

	// A second Attach over the first is refused and changes nothing.
	if _, err := Attach(ctx, p.pod); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Attach = %v, want AlreadyExists", err)
	}
	if s := inspect(t, p.pod); s.redirect["eth0"] != "tap0_mg" || s.redirect["net1"] != "tap1_mg" {
		t.Errorf("refused Attach changed the first one's filters: %v", s.redirect)
	}
	if err := Detach(ctx, n.State()); err != nil {
		t.Fatal(err)
	}
	n.Close()
	assertDetached(t, p.pod, "eth0", "net1")

	// A failure after the first, then after the second link: all undone.
	boom := errors.New("injected failure")
	for _, failAt := range []string{"tap0_mg", "tap1_mg"} {
		testHookAfterLink = func(tap string) error {
			if tap == failAt {
				return boom
			}
			return nil
		}
		t.Cleanup(func() { testHookAfterLink = nil })
		n, err := Attach(ctx, p.pod)
		if !errors.Is(err, boom) || n != nil {
			t.Fatalf("Attach failing at %s = %v, %v; want the injected failure", failAt, n, err)
		}
		assertDetached(t, p.pod, "eth0", "net1")
	}
	testHookAfterLink = nil

	// A cancelled context: nothing done.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Attach(cctx, p.pod); !errors.Is(err, context.Canceled) {
		t.Errorf("Attach with a cancelled context = %v", err)
	}
	assertDetached(t, p.pod, "eth0", "net1")
}

// TestAttachSharesAnIngressQdisc checks that an ingress qdisc already on the
// pod interface is used and left in place by Detach.
func TestAttachSharesAnIngressQdisc(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	p := newPodNet(t)
	inNS(t, p.pod, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		_, err = ensureIngress(h, l)
		return err
	})
	n, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if st := n.State(); st.Links[0].OwnQdisc {
		t.Error("state claims the qdisc found in place")
	}
	if s := inspect(t, p.pod); s.redirect["eth0"] != "tap0_mg" {
		t.Errorf("redirects = %v", s.redirect)
	}
	proveTraffic(t, p, n.Links[0].TapFile)
	if err := Detach(ctx, n.State()); err != nil {
		t.Fatal(err)
	}
	s := inspect(t, p.pod)
	if !s.ingress["eth0"] {
		t.Error("Detach removed the ingress qdisc it did not add")
	}
	if len(s.redirect) != 0 {
		t.Errorf("filters left: %v", s.redirect)
	}
}

func TestAttachLoopbackOnly(t *testing.T) {
	requireRoot(t)
	ns := newNetNS(t)
	inNS(t, ns, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
	n, err := Attach(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Links) != 0 || len(n.Routes) != 0 || len(n.Interfaces()) != 0 {
		t.Errorf("Attach on a loopback-only namespace = %+v, want no links and no routes", n)
	}
	if err := Detach(context.Background(), n.State()); err != nil {
		t.Error(err)
	}
}

func TestDetachGoneNamespace(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	p := newPodNet(t)
	n, err := Attach(ctx, p.pod)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	// The namespace is released (CNI DEL, netns removed) before Detach.
	if err := unix.Unmount(p.pod, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, n.State()); err != nil {
		t.Errorf("Detach of an unmounted namespace = %v", err)
	}
	if err := os.Remove(p.pod); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, n.State()); err != nil {
		t.Errorf("Detach of a removed namespace = %v", err)
	}
	if err := Detach(ctx, State{Links: []LinkState{{Name: "eth0", Tap: "tap0_mg"}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Detach without a path = %v, want InvalidArgument", err)
	}
	// a pod whose Attach never ran has nothing to undo
	if err := Detach(ctx, State{}); err != nil {
		t.Errorf("Detach of an empty state = %v", err)
	}
	if _, err := Attach(ctx, p.pod); !errdefs.IsNotFound(err) {
		t.Errorf("Attach on a missing namespace = %v, want NotFound", err)
	}
	if _, err := Attach(ctx, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Attach without a path = %v, want InvalidArgument", err)
	}
}

// proveTraffic writes frames into the tap as a guest would and checks that
// they leave by the pod's veth (seen on its peer end) and that the peer's
// answers come back out of the tap.
func proveTraffic(t *testing.T, p *podNet, tap *os.File) {
	t.Helper()
	sniff := packetSocket(t, p.peer, "peer0")
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	// Guest → peer: an ARP request for the peer's address, which the
	// packet socket on peer0 must see as written.
	arpReq := ethernet(bcast, p.podMAC, unix.ETH_P_ARP, arp(1, p.podMAC, p.podIP, make(net.HardwareAddr, 6), p.peerIP))
	writeTap(t, tap, arpReq)
	readUntil(t, "the ARP request on the peer's end", func(b []byte) bool { return bytes.Equal(b, arpReq) }, func(b []byte) (int, error) {
		return unix.Read(sniff, b)
	})

	// Peer → guest: the peer's kernel answers, to the pod's MAC.
	readUntil(t, "the peer's ARP reply from the tap", func(b []byte) bool {
		return len(b) >= 42 && bytes.Equal(b[0:6], p.podMAC) && binary.BigEndian.Uint16(b[12:14]) == unix.ETH_P_ARP &&
			binary.BigEndian.Uint16(b[20:22]) == 2 && bytes.Equal(b[28:32], p.peerIP) && bytes.Equal(b[38:42], p.podIP)
	}, tapReader(tap))

	// And IP: an ICMP echo request, answered by the peer's kernel.
	const id, seq = 0x4d47, 7
	echo := ethernet(p.peerMAC, p.podMAC, unix.ETH_P_IP, ipv4ICMP(p.podIP, p.peerIP, icmpEcho(8, id, seq, []byte("magnetar podnet"))))
	writeTap(t, tap, echo)
	readUntil(t, "the ICMP echo reply from the tap", func(b []byte) bool {
		return len(b) >= 42 && bytes.Equal(b[0:6], p.podMAC) && binary.BigEndian.Uint16(b[12:14]) == unix.ETH_P_IP &&
			b[23] == unix.IPPROTO_ICMP && bytes.Equal(b[26:30], p.peerIP) && b[34] == 0 &&
			binary.BigEndian.Uint16(b[38:40]) == id && binary.BigEndian.Uint16(b[40:42]) == seq
	}, tapReader(tap))
}

// vnetHdrLen is the size of struct virtio_net_hdr, which prefixes every
// frame on a tap opened with IFF_VNET_HDR (TUNSETVNETHDRSZ not called).
const vnetHdrLen = 10

func writeTap(t *testing.T, tap *os.File, frame []byte) {
	t.Helper()
	if _, err := tap.Write(append(make([]byte, vnetHdrLen), frame...)); err != nil {
		t.Fatalf("write to the tap: %v", err)
	}
}

func tapReader(tap *os.File) func([]byte) (int, error) {
	return func(b []byte) (int, error) {
		if err := tap.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			return 0, err
		}
		buf := make([]byte, len(b)+vnetHdrLen)
		n, err := tap.Read(buf)
		if n < vnetHdrLen {
			return 0, err
		}
		return copy(b, buf[vnetHdrLen:n]), err
	}
}

// readUntil reads frames until match accepts one, for up to 5 s; other
// frames (IPv6 neighbour discovery and the like) are skipped.
func readUntil(t *testing.T, what string, match func([]byte) bool, read func([]byte) (int, error)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	b := make([]byte, 65536)
	for time.Now().Before(deadline) {
		n, err := read(b)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if n > 0 && match(b[:n]) {
			return
		}
	}
	t.Fatalf("did not see %s", what)
}

// packetSocket opens an AF_PACKET socket bound to the link named name in
// the namespace at ns, with a 200 ms receive timeout.
func packetSocket(t *testing.T, ns, name string) int {
	t.Helper()
	fd := -1
	err := nsutil.Do(ns, nsutil.KindNet, func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index}); err != nil {
			unix.Close(s)
			return err
		}
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ethernet(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := append(append(slices.Clone(dst), src...), byte(typ>>8), byte(typ))
	return append(b, payload...)
}

func arp(op uint16, sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP) []byte {
	b := []byte{0, 1, 0x08, 0x00, 6, 4, byte(op >> 8), byte(op)}
	b = append(b, sha...)
	b = append(b, spa.To4()...)
	b = append(b, tha...)
	return append(b, tpa.To4()...)
}

func ipv4ICMP(src, dst net.IP, icmp []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(icmp)))
	h[8] = 64
	h[9] = unix.IPPROTO_ICMP
	copy(h[12:], src.To4())
	copy(h[16:], dst.To4())
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, icmp...)
}

func icmpEcho(typ byte, id, seq uint16, data []byte) []byte {
	b := make([]byte, 8, 8+len(data))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(s string) bool { return !slices.Contains(b, s) })
}

func stateEqual(a, b State) bool {
	return a.NetNS == b.NetNS && slices.Equal(a.Links, b.Links)
}
