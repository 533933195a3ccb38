package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
)

const (
	// tapNameFormat names the tap of the Nth pod interface.
	tapNameFormat = "tap%d_mg"
	// filterPriority is the tc priority ("pref") of Attach's filters;
	// Detach deletes the filters at this priority and no others.
	filterPriority = 0x4d47
	// filterParent is the ingress hook of both the ingress and the clsact
	// qdisc (ffff:fff2), so a clsact qdisc found in place serves too.
	filterParent = netlink.HANDLE_MIN_INGRESS
	// dumpRetries bounds the retries of a netlink dump interrupted by a
	// concurrent change (NLM_F_DUMP_INTR).
	dumpRetries = 5
)

// testHookAfterLink, when set by tests, runs after each link is attached;
// an error makes Attach fail there.
var testHookAfterLink func(tap string) error

// Network is a pod namespace prepared for a VM by Attach.
type Network struct {
	// NetNS is the namespace's path.
	NetNS string
	// Links are the attached pod interfaces, in ifindex order; the guest
	// NICs are made in this order.
	Links []Link
	// Routes are the namespace's main-table routes in the agent's form,
	// link routes first (see the package documentation for what is left
	// out).
	Routes []*agentapi.Route
}

// Link is one pod interface and the tap joined to it.
type Link struct {
	// Name is the pod interface's name (normally CNI's veth end, eth0);
	// the guest NIC is given the same name.
	Name string
	// Tap is the name of the tap Attach made.
	Tap string
	// TapFile is the open tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR), for the
	// VMM to inherit. Network.Close closes it.
	TapFile *os.File
	// MAC is the pod interface's address, for the guest NIC.
	MAC net.HardwareAddr
	// MTU is the pod interface's MTU (the tap has the same).
	MTU int
	// Addresses are the pod interface's addresses in CIDR form
	// ("10.88.0.5/16", "fd00::5/64").
	Addresses []string

	ownQdisc bool // Attach added Name's ingress qdisc
}

// State is what Detach needs, JSON-serialisable for the sandbox's record.
type State struct {
	// NetNS is the namespace's path.
	NetNS string `json:"netns"`
	// Links are the attached interfaces.
	Links []LinkState `json:"links,omitempty"`
}

// LinkState is one attached interface in State.
type LinkState struct {
	// Name is the pod interface's name.
	Name string `json:"name"`
	// Tap is the tap's name.
	Tap string `json:"tap"`
	// OwnQdisc says Attach added the pod interface's ingress qdisc, so
	// Detach deletes it; one found in place is left.
	OwnQdisc bool `json:"own_qdisc,omitempty"`
}

// State returns what Detach needs to undo n.
func (n *Network) State() State {
	st := State{NetNS: n.NetNS}
	for _, l := range n.Links {
		st.Links = append(st.Links, LinkState{Name: l.Name, Tap: l.Tap, OwnQdisc: l.ownQdisc})
	}
	return st
}

// Interfaces returns the links in the agent's form, for SetupRequest.
func (n *Network) Interfaces() []*agentapi.Interface {
	out := make([]*agentapi.Interface, 0, len(n.Links))
	for _, l := range n.Links {
		out = append(out, &agentapi.Interface{
			Name:      l.Name,
			HwAddr:    l.MAC.String(),
			Addresses: slices.Clone(l.Addresses),
			Mtu:       uint32(l.MTU),
		})
	}
	return out
}

// Close closes the tap descriptors (the caller's copies, once the VMM has
// inherited them; with no VMM holding a tap, the tap disappears). It is
// idempotent; Detach still has to remove the filters.
func (n *Network) Close() error {
	var errs []error
	for i := range n.Links {
		if f := n.Links[i].TapFile; f != nil {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, fmt.Errorf("close tap %s: %w", n.Links[i].Tap, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Attach joins a tap to every pod interface of the network namespace at
// netnsPath, as the package documentation describes, and returns them with
// the namespace's routes. On error nothing it did remains.
func Attach(ctx context.Context, netnsPath string) (_ *Network, retErr error) {
	if netnsPath == "" {
		return nil, fmt.Errorf("attach: no network namespace path: %w", errdefs.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("attach %s: %w", netnsPath, err)
	}
	n := &Network{NetNS: netnsPath}
	err := inNetNS(netnsPath, func(h *netlink.Handle) error { return attachIn(ctx, h, n) })
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", netnsPath, err)
	}
	log.G(ctx).WithField("netns", netnsPath).Debugf("attached %d pod interfaces, %d routes", len(n.Links), len(n.Routes))
	return n, nil
}

// attachIn does Attach's work on a thread inside the namespace, filling n;
// on error it undoes it.
func attachIn(ctx context.Context, h *netlink.Handle, n *Network) error {
	pod, err := podLinks(ctx, h, n)
	if err != nil {
		return err
	}
	return join(ctx, h, n, pod, func(i int) (netlink.Link, error) { return makeTap(h, &n.Links[i]) })
}

// podLinks lists the pod interfaces of the namespace (h's) into n.Links,
// with the tap name each gets, and its routes into n.Routes. It changes
// nothing.
func podLinks(ctx context.Context, h *netlink.Handle, n *Network) ([]netlink.Link, error) {
	links, err := dump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	slices.SortFunc(links, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
	existing := map[string]bool{}
	for _, l := range links {
		existing[l.Attrs().Name] = true
	}

	var pod []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || l.Type() == "tuntap" {
			continue
		}
		addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		cidrs := guestAddrs(addrs)
		if len(cidrs) == 0 {
			continue
		}
		if len(a.HardwareAddr) != 6 {
			log.G(ctx).WithField("link", a.Name).Warnf("pod interface of type %s has no Ethernet address: not given to the VM", l.Type())
			continue
		}
		tap := fmt.Sprintf(tapNameFormat, len(pod))
		if existing[tap] {
			return nil, fmt.Errorf("%s already exists (attached before and not detached?): %w", tap, errdefs.ErrAlreadyExists)
		}
		pod = append(pod, l)
		n.Links = append(n.Links, Link{
			Name:      a.Name,
			Tap:       tap,
			MAC:       slices.Clone(a.HardwareAddr),
			MTU:       a.MTU,
			Addresses: cidrs,
		})
	}

	routes, err := dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	for _, l := range pod {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var skipped []string
	n.Routes, skipped = guestRoutes(routes, names)
	for _, s := range skipped {
		log.G(ctx).WithField("route", s).Warn("pod route not given to the VM")
	}
	return pod, nil
}

// join gives each pod interface pod[i] the tap tapFor(i) returns (made or
// brought into the namespace, named n.Links[i].Tap) and joins the two. On
// error it undoes what it did, from what was recorded in n.
func join(ctx context.Context, h *netlink.Handle, n *Network, pod []netlink.Link, tapFor func(i int) (netlink.Link, error)) (retErr error) {
	attached := 0
	defer func() {
		if retErr == nil {
			return
		}
		st := n.State()
		st.Links = st.Links[:attached]
		if err := detachIn(h, st); err != nil {
			log.G(ctx).WithError(err).Warn("attach failed and undoing it failed too")
		}
		_ = n.Close()
		n.Links = nil
	}()
	for i, l := range pod {
		if err := ctx.Err(); err != nil {
			return err
		}
		attached = i + 1 // from here on, undo this link too
		tap, err := tapFor(i)
		if err == nil {
			err = joinLink(h, l, tap, &n.Links[i])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", l.Attrs().Name, err)
		}
		if testHookAfterLink != nil {
			if err := testHookAfterLink(n.Links[i].Tap); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeTap makes out's tap (out.Tap) in the namespace of this thread and
// records its descriptor in out.
func makeTap(h *netlink.Handle, out *Link) (netlink.Link, error) {
	tt := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: out.Tap},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		Queues:     1,
		NonPersist: true,
	}
	// The tap is made in the namespace of this thread (it opens
	// /dev/net/tun), which is why all of Attach runs inside it.
	if err := h.LinkAdd(tt); err != nil {
		return nil, fmt.Errorf("create tap %s: %w", out.Tap, err)
	}
	if len(tt.Fds) != 1 {
		for _, f := range tt.Fds {
			f.Close()
		}
		return nil, fmt.Errorf("create tap %s: %d descriptors, want 1", out.Tap, len(tt.Fds))
	}
	out.TapFile = tt.Fds[0]
	tap, err := h.LinkByName(out.Tap)
	if err != nil {
		return nil, fmt.Errorf("find tap %s: %w", out.Tap, err)
	}
	return tap, nil
}

// joinLink sets tap (down, in the namespace) to pl's MTU, up, and joins
// the two with a redirect each way. It records what it did in out
// (ownQdisc), for the caller to undo on error.
func joinLink(h *netlink.Handle, pl, tap netlink.Link, out *Link) error {
	if err := h.LinkSetMTU(tap, out.MTU); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", out.MTU, out.Tap, err)
	}
	if err := h.LinkSetUp(tap); err != nil {
		return fmt.Errorf("set %s up: %w", out.Tap, err)
	}
	own, err := ensureIngress(h, pl)
	out.ownQdisc = own
	if err != nil {
		return err
	}
	if _, err := ensureIngress(h, tap); err != nil {
		return err
	}
	if err := addRedirect(h, pl, tap); err != nil {
		return err
	}
	return addRedirect(h, tap, pl)
}

// ensureIngress adds an ingress qdisc to l unless l has one (ingress or
// clsact) already, and reports whether it added it.
func ensureIngress(h *netlink.Handle, l netlink.Link) (bool, error) {
	found, err := ingressQdisc(h, l)
	if err != nil || found != nil {
		return false, err
	}
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Parent:    netlink.HANDLE_INGRESS,
		Handle:    netlink.MakeHandle(0xffff, 0),
	}}
	if err := h.QdiscAdd(q); err != nil {
		return false, fmt.Errorf("add ingress qdisc to %s: %w", l.Attrs().Name, err)
	}
	return true, nil
}

// ingressQdisc returns l's ingress or clsact qdisc, nil when it has none.
func ingressQdisc(h *netlink.Handle, l netlink.Link) (netlink.Qdisc, error) {
	qs, err := dump(func() ([]netlink.Qdisc, error) { return h.QdiscList(l) })
	if err != nil {
		return nil, fmt.Errorf("list qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			return q, nil
		}
	}
	return nil, nil
}

// addRedirect adds the filter that sends everything arriving on from out of
// to.
func addRedirect(h *netlink.Handle, from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    filterParent,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		// no Sel: netlink makes the match-all selector (u32 match u8 0 0)
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)}, // egress redirect, stolen
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("add redirect filter %s -> %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// Detach undoes Attach in st.NetNS from st alone: it deletes Attach's
// filters from the pod interfaces, the ingress qdiscs Attach added, and the
// taps. What is already gone is skipped, and a namespace that no longer
// exists is fine; a State with no links (Attach never ran) is nothing to
// undo. It keeps going after an error and returns them all.
func Detach(ctx context.Context, st State) error {
	if len(st.Links) == 0 {
		return nil // Attach changed nothing (or never ran)
	}
	if st.NetNS == "" {
		return fmt.Errorf("detach: no network namespace path: %w", errdefs.ErrInvalidArgument)
	}
	lg := log.G(ctx).WithField("netns", st.NetNS)
	ok, err := nsutil.IsNSFile(st.NetNS, nsutil.KindNet)
	switch {
	case errdefs.IsNotFound(err):
		lg.Debug("detach: network namespace gone")
		return nil
	case err != nil:
		return fmt.Errorf("detach %s: %w", st.NetNS, err)
	case !ok:
		lg.Debug("detach: no network namespace mounted any more")
		return nil
	}
	err = inNetNS(st.NetNS, func(h *netlink.Handle) error { return detachIn(h, st) })
	if errdefs.IsNotFound(err) {
		return nil // removed since IsNSFile
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", st.NetNS, err)
	}
	lg.Debugf("detached %d pod interfaces", len(st.Links))
	return nil
}

// detachIn does Detach's work with a handle inside the namespace.
func detachIn(h *netlink.Handle, st State) error {
	var errs []error
	for _, ls := range st.Links {
		if pl, err := linkByName(h, ls.Name); err != nil {
			errs = append(errs, err)
		} else if pl != nil {
			if err := delRedirect(h, pl); err != nil {
				errs = append(errs, err)
			}
			if ls.OwnQdisc {
				if err := delIngress(h, pl); err != nil {
					errs = append(errs, err)
				}
			}
		}
		tap, err := linkByName(h, ls.Tap)
		switch {
		case err != nil:
			errs = append(errs, err)
		case tap == nil:
		case tap.Type() != "tuntap":
			errs = append(errs, fmt.Errorf("%s is a %s, not a tap: left alone", ls.Tap, tap.Type()))
		default:
			// Its qdisc and filter go with it.
			if err := h.LinkDel(tap); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete tap %s: %w", ls.Tap, err))
			}
		}
	}
	return errors.Join(errs...)
}

// delRedirect deletes Attach's filter (the ones at filterPriority) from l.
func delRedirect(h *netlink.Handle, l netlink.Link) error {
	fs, err := dump(func() ([]netlink.Filter, error) { return h.FilterList(l, filterParent) })
	if err != nil {
		return fmt.Errorf("list filters of %s: %w", l.Attrs().Name, err)
	}
	if !slices.ContainsFunc(fs, func(f netlink.Filter) bool { return f.Attrs().Priority == filterPriority }) {
		return nil
	}
	f := &netlink.U32{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: l.Attrs().Index,
		Parent:    filterParent,
		Priority:  filterPriority,
		Protocol:  unix.ETH_P_ALL,
	}}
	if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete redirect filter of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// delIngress deletes l's ingress qdisc, if it has one.
func delIngress(h *netlink.Handle, l netlink.Link) error {
	q, err := ingressQdisc(h, l)
	if err != nil || q == nil {
		return err
	}
	if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete ingress qdisc of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// linkByName returns the link named name, nil when there is none.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	return l, nil
}

// inNetNS runs fn with a netlink handle inside the network namespace at path
// (nsutil.Do).
func inNetNS(path string, fn func(h *netlink.Handle) error) error {
	return nsutil.Do(path, nsutil.KindNet, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		return fn(h)
	})
}

// dump runs a netlink dump again while the kernel reports it interrupted
// by a concurrent change.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == dumpRetries {
			return v, err
		}
	}
}
