package podnet

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// A VM booted ahead of its pod: its tap made in a holding namespace, moved
// into the pod's at the claim, joined, with traffic flowing through the
// descriptor the "VMM" held all along.
func TestHoldTapsAdopt(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hold := newNetNS(t)
	files, err := HoldTaps(ctx, hold, []string{"pabc0", "pabc1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	s := inspect(t, hold)
	for _, name := range []string{"pabc0", "pabc1"} {
		l, ok := s.links[name].(*netlink.Tuntap)
		if !ok || !l.NonPersist || l.Attrs().Flags&net.FlagUp != 0 {
			t.Fatalf("%s in the holding namespace: %#v, want a down, non-persistent tap", name, s.links[name])
		}
	}

	p := newPodNet(t) // eth0, and spare0 without addresses
	// two taps for one pod interface: refused, nothing moved
	if _, err := Adopt(ctx, p.pod, hold, []string{"pabc0", "pabc1"}); !errors.Is(err, ErrLinkCount) {
		t.Fatalf("Adopt with 2 taps for 1 interface: %v, want ErrLinkCount", err)
	}
	if s := inspect(t, hold); s.links["pabc0"] == nil || s.links["pabc1"] == nil {
		t.Fatal("a refused Adopt moved a tap")
	}
	assertDetached(t, p.pod, "eth0")

	n, err := Adopt(ctx, p.pod, hold, []string{"pabc0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Links) != 1 || n.Links[0].Tap != "tap0_mg" || n.Links[0].TapFile != nil || n.Links[0].MTU != 1400 ||
		n.Links[0].MAC.String() != p.podMAC.String() {
		t.Fatalf("links = %+v", n.Links)
	}
	if s := inspect(t, hold); s.links["pabc0"] != nil || s.links["pabc1"] == nil {
		t.Errorf("holding namespace after Adopt: %v, want pabc1 only", s.links)
	}
	s = inspect(t, p.pod)
	tap, ok := s.links["tap0_mg"].(*netlink.Tuntap)
	if !ok || tap.MTU != 1400 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("tap0_mg in the pod: %#v, want an up tap of MTU 1400", s.links["tap0_mg"])
	}
	if s.redirect["eth0"] != "tap0_mg" || s.redirect["tap0_mg"] != "eth0" {
		t.Errorf("redirects = %v, want eth0 <-> tap0_mg", s.redirect)
	}
	proveTraffic(t, p, files[0])

	if err := Detach(ctx, n.State()); err != nil {
		t.Fatal(err)
	}
	assertDetached(t, p.pod, "eth0")
}

func TestHoldTapsRollback(t *testing.T) {
	requireRoot(t)
	hold := newNetNS(t)
	// the second name is taken: nothing of the first stays
	if _, err := HoldTaps(context.Background(), hold, []string{"pdup0", "pdup0"}); err == nil {
		t.Fatal("HoldTaps with a name twice succeeded")
	}
	for name, l := range inspect(t, hold).links {
		if l.Type() == "tuntap" {
			t.Errorf("tap %s left in the holding namespace", name)
		}
	}
}
