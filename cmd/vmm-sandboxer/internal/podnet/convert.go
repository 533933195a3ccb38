package podnet

import (
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// guestAddrs returns the addresses the guest NIC is given, in CIDR form:
// all but IPv6 link-local ones and IPv6 ones that are not permanent, which
// the guest kernel makes itself (from the MAC it shares with the pod
// interface, from router advertisements).
func guestAddrs(addrs []netlink.Addr) []string {
	var out []string
	for _, a := range addrs {
		if a.IPNet == nil || a.IP == nil {
			continue
		}
		if a.IP.To4() == nil && (a.IP.IsLinkLocalUnicast() || a.Flags&unix.IFA_F_PERMANENT == 0) {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	return out
}

// guestRoutes converts main-table routes through the links in names
// (ifindex → name) to the agent's form, link routes first and otherwise in
// the order given. It also returns a description of each route it left out
// for a reason worth logging; routes the guest kernel makes itself (protocol
// kernel or ra) are left out silently.
func guestRoutes(routes []netlink.Route, names map[int]string) (out []*agentapi.Route, skipped []string) {
	var viaGateway []*agentapi.Route
	for _, r := range routes {
		if r.Table != unix.RT_TABLE_MAIN || r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA {
			continue
		}
		why := ""
		switch {
		case r.Type != unix.RTN_UNICAST:
			why = "not a unicast route (type " + strconv.Itoa(r.Type) + ")"
		case len(r.MultiPath) > 0:
			why = "multipath"
		case r.Via != nil:
			why = "gateway of another family (via)"
		case names[r.LinkIndex] == "":
			why = "not through an attached interface"
		}
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("%s: %s", r, why))
			continue
		}
		ar := &agentapi.Route{
			Destination: destination(r),
			Device:      names[r.LinkIndex],
			Metric:      uint32(r.Priority),
		}
		if r.Src != nil {
			ar.Source = r.Src.String()
		}
		if r.Gw == nil {
			out = append(out, ar)
			continue
		}
		ar.Gateway = r.Gw.String()
		viaGateway = append(viaGateway, ar)
	}
	return append(out, viaGateway...), skipped
}

// destination is r's destination in the agent's form: "default" for a
// default route through a gateway, else a CIDR ("0.0.0.0/0" for a default
// route straight on a link, since the agent wants a gateway with "default").
func destination(r netlink.Route) string {
	if r.Dst != nil && r.Dst.IP != nil {
		if ones, _ := r.Dst.Mask.Size(); ones > 0 || r.Gw == nil {
			return r.Dst.String()
		}
		return "default"
	}
	if r.Gw != nil {
		return "default"
	}
	if r.Family == netlink.FAMILY_V6 {
		return (&net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}).String()
	}
	return (&net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}).String()
}
