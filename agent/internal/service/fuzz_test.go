package service

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// lines splits a fuzz string into a list ("" is none).
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// FuzzSetup: a SetupRequest, as the host sends it over ttrpc (marshalled
// and decoded again), is either refused with an invalid-argument error
// naming its field, or planned into something safe to apply: a hostname of
// RFC 1123 labels, a resolv.conf of nameserver/search/options lines only,
// sysctl keys that stay below /proc/sys (also when only asked whether they
// exist) with one-line values, links with a name or a MAC and a sane MTU.
func FuzzSetup(f *testing.F) {
	f.Add("pod-1", "10.0.0.10", "svc.cluster.local", "ndots:5", "net.ipv4.ip_forward", "1", "eth0", "02:00:00:00:00:01", "10.0.0.2/24", uint32(1500), "default", "10.0.0.1", "", "")
	f.Add("-bad", "not-an-ip", "a..b", "x y", "../../etc/passwd", "a\nb", "a/b", "zz", "10.0.0.2", uint32(10), "10.0.0.0/8", "::1", "eth0", "x")
	f.Add("", "", "", "", "kernel..x", "", "", "", "", uint32(0), "", "", "", "")
	f.Add(strings.Repeat("a", 70), "1.1.1.1\n::1", "example.com.", "a:b", "net/ipv4/conf/all/forwarding", "0", "..", "", "", uint32(65536), "10.0.0.0/8", "", "", "")
	f.Fuzz(func(t *testing.T, host, servers, searches, options, sysKey, sysVal, ifName, ifMAC, ifAddrs string, mtu uint32, rtDst, rtGw, rtDev, rtSrc string) {
		in := &agentapi.SetupRequest{
			Hostname:   host,
			Sysctls:    map[string]string{sysKey: sysVal},
			Interfaces: []*agentapi.Interface{{Name: ifName, HwAddr: ifMAC, Addresses: lines(ifAddrs), Mtu: mtu}},
			Routes:     []*agentapi.Route{{Destination: rtDst, Gateway: rtGw, Device: rtDev, Source: rtSrc}},
		}
		if servers+searches+options != "" {
			in.Dns = &agentapi.DNS{Servers: lines(servers), Searches: lines(searches), Options: lines(options)}
		}
		b, err := proto.Marshal(in)
		if err != nil {
			return // a string that is not UTF-8: the host cannot send it
		}
		r := &agentapi.SetupRequest{}
		if err := proto.Unmarshal(b, r); err != nil {
			t.Fatalf("a marshalled SetupRequest does not decode: %v", err)
		}
		var asked []string
		p, err := Validate(r, func(k string) error { asked = append(asked, k); return nil })
		for _, k := range asked {
			path := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
			if !strings.HasPrefix(path, "/proc/sys/") || validSysctlKey(k) != nil {
				t.Fatalf("sysctl %q looked up at %s", k, path)
			}
		}
		if err != nil {
			fields := []string{"hostname", "dns.", "sysctls", "interfaces[0]", "routes[0]"}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(err.Error(), f) }) {
				t.Fatalf("Validate(%v) = %v: want an invalid-argument error naming the field", r, err)
			}
			return
		}
		if p.Hostname != "" && (validHostname(p.Hostname) != nil || p.Hostname != host) {
			t.Fatalf("planned hostname %q", p.Hostname)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(p.ResolvConf), "\n"), "\n") {
			w := strings.Fields(l)
			if l == "" && p.ResolvConf == nil {
				continue
			}
			if len(w) < 2 || !slices.Contains([]string{"nameserver", "search", "options"}, w[0]) || strings.ContainsAny(l, "\x00\r\v\f") {
				t.Fatalf("resolv.conf line %q of %q", l, p.ResolvConf)
			}
		}
		for _, s := range p.Sysctls {
			if validSysctlKey(s.Key) != nil || strings.ContainsAny(s.Value, "\n\x00") || len(s.Value) > 4096 {
				t.Fatalf("planned sysctl %q = %q", s.Key, s.Value)
			}
		}
		for _, l := range p.Links {
			if (l.Name == "" && l.MAC == nil) || (l.Name != "" && validIfName(l.Name) != nil) || (l.MTU != 0 && (l.MTU < 68 || l.MTU > 65535)) {
				t.Fatalf("planned link %+v", l)
			}
		}
		for _, rt := range p.Routes {
			if rt.Device != "" && validIfName(rt.Device) != nil || rt.Default && !rt.Gateway.IsValid() {
				t.Fatalf("planned route %+v", rt)
			}
		}
	})
}
