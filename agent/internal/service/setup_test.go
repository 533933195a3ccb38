package service

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// warmRequest is what the host sends a VM of its warm pool when a pod
// claims it: entropy, and the pod's MACs for NICs that booted with their own.
func warmRequest() *agentapi.SetupRequest {
	return &agentapi.SetupRequest{
		Entropy:  bytes.Repeat([]byte{0xa5, 0x01}, 16),
		Hostname: "pod-1",
		Interfaces: []*agentapi.Interface{
			{Name: "eth0", HwAddr: "52:54:00:00:00:01", SetHwAddr: "02:42:ac:11:00:02", Addresses: []string{"10.88.0.5/16"}},
			{Name: "eth1", HwAddr: "52:54:00:00:00:02"},
		},
		Routes: []*agentapi.Route{{Gateway: "10.88.0.1", Device: "eth0"}},
	}
}

func TestValidateRefusesBadSetHwAddr(t *testing.T) {
	cases := []struct {
		why, field string
		mut        func(r *agentapi.SetupRequest)
	}{
		{"not a MAC", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "zz:zz" }},
		{"an EUI-64", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "02:42:ac:11:00:02:00:01" }},
		{"multicast", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "01:00:5e:00:00:01" }},
		{"broadcast", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "ff:ff:ff:ff:ff:ff" }},
		{"all zeros", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "00:00:00:00:00:00" }},
		{"twice (spelled otherwise)", "interfaces[1].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[1].SetHwAddr = "02-42-AC-11-00-02" }},
		{"another interface's hw_addr", "interfaces[1].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[1].SetHwAddr = "52:54:00:00:00:01" }},
		{"a later interface's hw_addr", "interfaces[0].set_hw_addr", func(r *agentapi.SetupRequest) { r.Interfaces[0].SetHwAddr = "52:54:00:00:00:02" }},
	}
	for _, c := range cases {
		r := warmRequest()
		c.mut(r)
		_, err := Validate(r, nil)
		if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%s: got %v, want InvalidArgument naming %s", c.why, err, c.field)
		}
	}
}

func TestValidatePlansNewMACs(t *testing.T) {
	r := warmRequest()
	// its own MAC again (a no-op) and a link selected by name are fine
	r.Interfaces[1].SetHwAddr = "52:54:00:00:00:02"
	r.Interfaces = append(r.Interfaces, &agentapi.Interface{Name: "eth2", SetHwAddr: "02:42:AC:11:00:03"})
	p, err := Validate(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range p.Links {
		got = append(got, l.Name+" "+l.MAC.String()+" "+l.SetMAC.String())
	}
	want := []string{"eth0 52:54:00:00:00:01 02:42:ac:11:00:02", "eth1 52:54:00:00:00:02 52:54:00:00:00:02", "eth2  02:42:ac:11:00:03"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("links %q, want %q", got, want)
	}
	r.Interfaces[1].SetHwAddr = ""
	if p, err := Validate(r, nil); err != nil || p.Links[1].SetMAC != nil {
		t.Fatalf("no set_hw_addr: %v, %+v", err, p)
	}
}

func TestValidateEntropySizes(t *testing.T) {
	for _, n := range []int{1, 31, 4097, 1 << 20} {
		r := warmRequest()
		r.Entropy = make([]byte, n)
		if _, err := Validate(r, nil); !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "entropy:") {
			t.Errorf("%d bytes: got %v, want InvalidArgument naming entropy", n, err)
		}
	}
	for _, n := range []int{32, 33, 4096} {
		r := warmRequest()
		r.Entropy = bytes.Repeat([]byte{7}, n)
		p, err := Validate(r, nil)
		if err != nil {
			t.Errorf("%d bytes: %v", n, err)
		} else if !bytes.Equal(p.Entropy, r.Entropy) {
			t.Errorf("%d bytes: planned %d bytes", n, len(p.Entropy))
		}
	}
	for _, e := range [][]byte{nil, {}} {
		r := warmRequest()
		r.Entropy = e
		if p, err := Validate(r, nil); err != nil || p.Entropy != nil {
			t.Errorf("no entropy (%#v): %v, planned %v", e, err, p)
		}
	}
}

// Setup adds the entropy before anything else, with the very bytes the host
// sent, and hands each link its new MAC.
func TestSetupAddsEntropyFirstAndGivesLinksTheirMACs(t *testing.T) {
	h := newHarness(t)
	r := warmRequest()
	r.Dns = &agentapi.DNS{Servers: []string{"10.96.0.10"}}
	r.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
	if _, err := h.client.Sandbox().Setup(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want := []string{"entropy " + hex.EncodeToString(r.Entropy), "hostname pod-1", "resolv nameserver 10.96.0.10\n",
		"sysctl net.ipv4.ip_forward=1", "link eth0 52:54:00:00:00:01 set 02:42:ac:11:00:02", "link eth1 52:54:00:00:00:02",
		"route invalid Prefix via 10.88.0.1"}
	if got := h.sys.appliedCopy(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("applied\n %q\nwant\n %q", got, want)
	}
}

// A failed RNDADDENTROPY fails Setup as any other failure of the guest
// (Unknown, not the host's fault) before anything else is applied: a
// guest that could not be reseeded must not become the pod.
func TestSetupStopsWhenEntropyFails(t *testing.T) {
	h := newHarness(t)
	h.sys.entropyErr = errors.New("RNDADDENTROPY on /dev/random: operation not permitted")
	_, err := h.client.Sandbox().Setup(context.Background(), warmRequest())
	if !errdefs.IsUnknown(err) || !strings.Contains(err.Error(), "entropy: RNDADDENTROPY") {
		t.Fatalf("got %v, want Unknown naming entropy", err)
	}
	if a := h.sys.appliedCopy(); len(a) != 0 {
		t.Fatalf("applied %q after the entropy failed", a)
	}
}
