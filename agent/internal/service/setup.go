package service

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// Link is a validated agentapi.Interface.
type Link struct {
	Name string           // "" with MAC: keep the name
	MAC  net.HardwareAddr // nil: find the link by Name
	// SetMAC, when not nil, is given to the link before anything else: a
	// unicast Ethernet MAC that no other Link selects or sets.
	SetMAC net.HardwareAddr
	Addrs  []netip.Prefix
	MTU    uint32
}

// RouteSpec is a validated agentapi.Route. Dst is the zero Prefix for a
// default route (of Gateway's family).
type RouteSpec struct {
	Dst     netip.Prefix
	Default bool
	Gateway netip.Addr
	Device  string
	Src     netip.Addr
	Metric  uint32
}

// Sysctl is one validated sysctl.
type Sysctl struct{ Key, Value string }

// Plan is a validated SetupRequest, applied in field order.
type Plan struct {
	// Entropy goes into the guest's pool before anything else (nil: none),
	// so that nothing Setup starts can draw random numbers the guest shares
	// with another one booted or restored from the same image.
	Entropy    []byte
	Hostname   string
	ResolvConf []byte // nil: leave alone
	Sysctls    []Sysctl
	Links      []Link
	Routes     []RouteSpec
}

// The bounds of SetupRequest.entropy: 32 bytes are the 256 bits of the
// CRNG's key, fewer would leave the reseeded state guessable; more than
// 4096 bytes only makes the request bigger.
const (
	minEntropy = 32
	maxEntropy = 4096
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// validHostname is RFC 1123: dot-separated labels of letters, digits and
// '-', not starting or ending with '-', at most 64 bytes (HOST_NAME_MAX).
func validHostname(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("%d bytes is longer than 64", len(h))
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1-63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q must not start or end with '-'", l)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("character %q is not allowed", r)
			}
		}
	}
	return nil
}

// validIfName is what the kernel accepts as a link name.
func validIfName(n string) error {
	if n == "" || len(n) > 15 {
		return fmt.Errorf("%q must be 1-15 bytes", n)
	}
	if n == "." || n == ".." {
		return fmt.Errorf("%q is not a link name", n)
	}
	for _, r := range n {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Errorf("%q: character %q is not allowed", n, r)
		}
	}
	return nil
}

// validSysctlKey accepts dotted keys of [A-Za-z0-9_-] segments (interface
// names may appear as segments); the path is resolved under /proc/sys.
func validSysctlKey(k string) error {
	if k == "" || len(k) > 256 {
		return fmt.Errorf("%q must be 1-256 bytes", k)
	}
	segs := strings.Split(k, ".")
	if len(segs) < 2 {
		return fmt.Errorf("%q: want a dotted key such as net.ipv4.ip_forward", k)
	}
	for _, s := range segs {
		if s == "" {
			return fmt.Errorf("%q has an empty segment", k)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("%q: character %q is not allowed", k, r)
			}
		}
	}
	return nil
}

// parseMAC parses a 6-byte Ethernet MAC.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet MAC", s)
	}
	return mac, nil
}

// validNewMAC is what a link may be given. The kernel would refuse a
// multicast or all-zero MAC with EADDRNOTAVAIL (is_valid_ether_addr), but
// only after Setup applied everything before the link; refused here, the
// request fails whole and names the field.
func validNewMAC(mac net.HardwareAddr) error {
	if mac[0]&1 != 0 {
		return fmt.Errorf("%s is a multicast address", mac)
	}
	if string(mac) == string(make([]byte, len(mac))) {
		return fmt.Errorf("%s is all zeros", mac)
	}
	return nil
}

// checkNewMACs refuses a set_hw_addr that another interface selects by
// hw_addr: the links would be found by the order in which they are
// configured, and a retried Setup (the links already carrying their new
// MACs) would find another link than the first one did.
func checkNewMACs(links []Link) error {
	selects := map[string]int{}
	for i, l := range links {
		if l.MAC != nil {
			selects[l.MAC.String()] = i
		}
	}
	for i, l := range links {
		if l.SetMAC == nil {
			continue
		}
		if j, ok := selects[l.SetMAC.String()]; ok && j != i {
			return invalid(fmt.Sprintf("interfaces[%d].set_hw_addr", i), "%s is interfaces[%d].hw_addr", l.SetMAC, j)
		}
	}
	return nil
}

func validDomain(d string) error {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return fmt.Errorf("%q must be 1-253 bytes", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q: label %q must be 1-63 characters", d, l)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q: character %q is not allowed", d, r)
			}
		}
	}
	return nil
}

// Validate checks every field of r (and each sysctl's existence with
// sysctlExists, when given) and returns the plan to apply. Nothing is applied.
func Validate(r *agentapi.SetupRequest, sysctlExists func(key string) error) (*Plan, error) {
	p := &Plan{}
	if e := r.GetEntropy(); len(e) > 0 {
		if len(e) < minEntropy || len(e) > maxEntropy {
			return nil, invalid("entropy", "%d bytes, want none or %d to %d", len(e), minEntropy, maxEntropy)
		}
		p.Entropy = e
	}
	if h := r.GetHostname(); h != "" {
		if err := validHostname(h); err != nil {
			return nil, invalid("hostname", "%q: %v", h, err)
		}
		p.Hostname = h
	}
	if d := r.GetDns(); d != nil {
		var b strings.Builder
		if len(d.GetServers()) > 8 {
			return nil, invalid("dns.servers", "%d servers, at most 8", len(d.GetServers()))
		}
		for i, s := range d.GetServers() {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, invalid(fmt.Sprintf("dns.servers[%d]", i), "%q is not an IP address", s)
			}
			fmt.Fprintf(&b, "nameserver %s\n", a)
		}
		if len(d.GetSearches()) > 32 {
			return nil, invalid("dns.searches", "%d domains, at most 32", len(d.GetSearches()))
		}
		for i, s := range d.GetSearches() {
			if err := validDomain(s); err != nil {
				return nil, invalid(fmt.Sprintf("dns.searches[%d]", i), "%v", err)
			}
		}
		if len(d.GetSearches()) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(d.GetSearches(), " "))
		}
		for i, o := range d.GetOptions() {
			if o == "" || len(o) > 64 || strings.IndexFunc(o, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' || r == '.' || r == '-')
			}) >= 0 {
				return nil, invalid(fmt.Sprintf("dns.options[%d]", i), "%q is not a resolv.conf option", o)
			}
		}
		if len(d.GetOptions()) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(d.GetOptions(), " "))
		}
		p.ResolvConf = []byte(b.String())
	}
	keys := make([]string, 0, len(r.GetSysctls()))
	for k := range r.GetSysctls() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := r.GetSysctls()[k]
		if err := validSysctlKey(k); err != nil {
			return nil, invalid("sysctls", "%v", err)
		}
		if len(v) > 4096 || strings.ContainsAny(v, "\n\x00") {
			return nil, invalid("sysctls["+k+"]", "value must be one line of at most 4096 bytes")
		}
		if sysctlExists != nil {
			if err := sysctlExists(k); err != nil {
				return nil, invalid("sysctls["+k+"]", "%v", err)
			}
		}
		p.Sysctls = append(p.Sysctls, Sysctl{Key: k, Value: v})
	}
	names := map[string]bool{}
	macs := map[string]bool{}
	newMACs := map[string]bool{}
	for i, ifc := range r.GetInterfaces() {
		f := fmt.Sprintf("interfaces[%d]", i)
		l := Link{MTU: ifc.GetMtu()}
		if ifc.GetName() != "" {
			if err := validIfName(ifc.GetName()); err != nil {
				return nil, invalid(f+".name", "%v", err)
			}
			if names[ifc.GetName()] {
				return nil, invalid(f+".name", "%q appears twice", ifc.GetName())
			}
			names[ifc.GetName()] = true
			l.Name = ifc.GetName()
		}
		if ifc.GetHwAddr() != "" {
			mac, err := parseMAC(ifc.GetHwAddr())
			if err != nil {
				return nil, invalid(f+".hw_addr", "%v", err)
			}
			if macs[mac.String()] {
				return nil, invalid(f+".hw_addr", "%s appears twice", mac)
			}
			macs[mac.String()] = true
			l.MAC = mac
		}
		if l.Name == "" && l.MAC == nil {
			return nil, invalid(f, "set name or hw_addr")
		}
		if s := ifc.GetSetHwAddr(); s != "" {
			mac, err := parseMAC(s)
			if err == nil {
				err = validNewMAC(mac)
			}
			if err != nil {
				return nil, invalid(f+".set_hw_addr", "%v", err)
			}
			if newMACs[mac.String()] {
				return nil, invalid(f+".set_hw_addr", "%s appears twice", mac)
			}
			newMACs[mac.String()] = true
			l.SetMAC = mac
		}
		if l.MTU != 0 && (l.MTU < 68 || l.MTU > 65535) {
			return nil, invalid(f+".mtu", "%d is outside 68-65535", l.MTU)
		}
		for j, a := range ifc.GetAddresses() {
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, invalid(fmt.Sprintf("%s.addresses[%d]", f, j), "%q is not an address in CIDR form", a)
			}
			l.Addrs = append(l.Addrs, pfx)
		}
		p.Links = append(p.Links, l)
	}
	if err := checkNewMACs(p.Links); err != nil {
		return nil, err
	}
	for i, rt := range r.GetRoutes() {
		f := fmt.Sprintf("routes[%d]", i)
		var s RouteSpec
		s.Metric = rt.GetMetric()
		if g := rt.GetGateway(); g != "" {
			a, err := netip.ParseAddr(g)
			if err != nil {
				return nil, invalid(f+".gateway", "%q is not an IP address", g)
			}
			s.Gateway = a
		}
		switch d := rt.GetDestination(); d {
		case "", "default":
			if !s.Gateway.IsValid() {
				return nil, invalid(f+".destination", "a default route needs a gateway")
			}
			s.Default = true
		default:
			pfx, err := netip.ParsePrefix(d)
			if err != nil {
				return nil, invalid(f+".destination", "%q is not a CIDR", d)
			}
			s.Dst = pfx.Masked()
			if s.Gateway.IsValid() && s.Gateway.Is4() != s.Dst.Addr().Is4() {
				return nil, invalid(f+".gateway", "%s is not of the destination's family", s.Gateway)
			}
		}
		if dev := rt.GetDevice(); dev != "" {
			if err := validIfName(dev); err != nil {
				return nil, invalid(f+".device", "%v", err)
			}
			s.Device = dev
		} else if !s.Gateway.IsValid() {
			return nil, invalid(f+".device", "a route without a gateway needs a device")
		}
		if src := rt.GetSource(); src != "" {
			a, err := netip.ParseAddr(src)
			if err != nil {
				return nil, invalid(f+".source", "%q is not an IP address", src)
			}
			s.Src = a
		}
		p.Routes = append(p.Routes, s)
	}
	return p, nil
}
