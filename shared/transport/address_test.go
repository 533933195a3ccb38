package transport

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseAddressRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Address
	}{
		{"ttrpc+unix:///run/magnetar/vmm/pod1/task.sock", Address{Protocol: "ttrpc", Scheme: "unix", Path: "/run/magnetar/vmm/pod1/task.sock"}},
		{"grpc+unix:///run/x.sock", Address{Protocol: "grpc", Scheme: "unix", Path: "/run/x.sock"}},
		{"ttrpc+vsock://3:1024", Address{Protocol: "ttrpc", Scheme: "vsock", CID: 3, Port: 1024}},
		{"ttrpc+vsock://4294967294:4294967294", Address{Protocol: "ttrpc", Scheme: "vsock", CID: 4294967294, Port: 4294967294}},
		{"grpc+vsock://0:0", Address{Protocol: "grpc", Scheme: "vsock"}},
		{"ttrpc+hvsock:///run/clh/pod1/vsock.sock:1024", Address{Protocol: "ttrpc", Scheme: "hvsock", Path: "/run/clh/pod1/vsock.sock", Port: 1024}},
		{"ttrpc+serial:///run/magnetar/vmm/pod1/agent.sock", Address{Protocol: "ttrpc", Scheme: "serial", Path: "/run/magnetar/vmm/pod1/agent.sock"}},
	} {
		got, err := ParseAddress(tc.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAddress(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseAddress(%q).String() = %q", tc.in, s)
		}
	}
}

func TestConstructorsRoundTrip(t *testing.T) {
	for _, a := range []Address{
		UnixAddress("/run/magnetar/task.sock"),
		VsockAddress(3, 1024),
		HybridVsockAddress("/run/clh/vsock.sock", 1024),
		SerialAddress("/run/magnetar/vmm/pod1/agent.sock"),
	} {
		if a.Protocol != ProtocolTTRPC {
			t.Errorf("%+v: protocol %q, want ttrpc", a, a.Protocol)
		}
		got, err := ParseAddress(a.String())
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", a.String(), err)
			continue
		}
		if got != a {
			t.Errorf("ParseAddress(%q) = %+v, want %+v", a.String(), got, a)
		}
	}
	if s := (Address{Scheme: SchemeUnix, Path: "/x.sock"}).String(); s != "ttrpc+unix:///x.sock" {
		t.Errorf("empty protocol formats as %q, want ttrpc+unix:///x.sock", s)
	}
	// Non-canonical numbers parse; String gives the canonical form.
	a, err := ParseAddress("ttrpc+vsock://03:01024")
	if err != nil || a.String() != "ttrpc+vsock://3:1024" {
		t.Errorf("ParseAddress(03:01024) = %v, %v", a, err)
	}
}

func TestParseAddressRejects(t *testing.T) {
	long := "/" + strings.Repeat("a", MaxUnixPathLen)
	for _, tc := range []struct {
		in, msg string
	}{
		{"", `missing "://"`},
		{"/run/x.sock", `missing "://"`},
		{"unix:///run/x.sock", "missing protocol"},
		{"+unix:///run/x.sock", "missing protocol"},
		{"vsock://3:1024", "missing protocol"},
		{"http+unix:///run/x.sock", `unsupported protocol "http"`},
		{"ttrpc+tcp://127.0.0.1:80", `unsupported scheme "tcp"`},
		{"ttrpc+://x", "missing scheme"},
		{"ttrpc+unix://", "empty socket path"},
		{"ttrpc+unix://run/x.sock", "is not absolute"},
		{"ttrpc+unix://" + long, "longer than the unix socket limit of 107"},
		{"ttrpc+unix:///run/x\x00y", "NUL"},
		{"ttrpc+vsock://3", "<cid>:<port>"},
		{"ttrpc+vsock://:1024", `vsock cid "": empty`},
		{"ttrpc+vsock://x:1024", `vsock cid "x"`},
		{"ttrpc+vsock://-1:1024", `vsock cid "-1"`},
		{"ttrpc+vsock://3:4294967296", `vsock port "4294967296": not a 32-bit unsigned decimal: value out of range`},
		{"ttrpc+vsock://3:1024:5", `vsock port "1024:5"`},
		{"ttrpc+vsock://4294967295:1024", "VMADDR_CID_ANY"},
		{"ttrpc+vsock://3:4294967295", "VMADDR_PORT_ANY"},
		{"ttrpc+hvsock:///run/clh/vsock.sock", "<socket path>:<port>"},
		{"ttrpc+hvsock:///run/clh/vsock.sock:", `hvsock port ""`},
		{"ttrpc+hvsock:///run/clh/vsock.sock:http", `hvsock port "http"`},
		{"ttrpc+hvsock:///run/a:b/vsock.sock:1024", "contains ':'"},
		{"ttrpc+hvsock://vsock.sock:1024", "is not absolute"},
		{"ttrpc+hvsock://:1024", "empty socket path"},
		{"ttrpc+hvsock://" + long + ":1024", "longer than the unix socket limit"},
		{"ttrpc+serial://", "empty socket path"},
		{"ttrpc+serial://agent.sock", "is not absolute"},
		{"ttrpc+serial://" + long, "longer than the unix socket limit of 107"},
	} {
		_, err := ParseAddress(tc.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) succeeded, want error containing %q", tc.in, tc.msg)
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseAddress(%q) = %v, not ErrInvalidArgument", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseAddress(%q) = %q, want it to contain %q", tc.in, err, tc.msg)
		}
	}
}

func TestVsockAddr(t *testing.T) {
	a := &VsockAddr{CID: 3, Port: 1024}
	if a.Network() != "vsock" || a.String() != "3:1024" {
		t.Errorf("VsockAddr = %s %s", a.Network(), a)
	}
}
