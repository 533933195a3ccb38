package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A minimal rtnetlink client: set a link's MAC, set a link up/rename/MTU,
// add an address, add a route. Each request waits for the kernel's ack.

type nlConn struct {
	fd  int
	seq atomic.Uint32
}

func openNetlink() (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &nlConn{fd: fd}, nil
}

func (c *nlConn) Close() error { return unix.Close(c.fd) }

type nlMsg struct {
	typ   uint16
	flags uint16
	body  []byte
}

func (m *nlMsg) attr(typ uint16, data []byte) {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	m.body = append(m.body, b...)
}

func u32(v uint32) []byte { b := make([]byte, 4); binary.NativeEndian.PutUint32(b, v); return b }

// do sends m with NLM_F_REQUEST|NLM_F_ACK and returns the kernel's error.
func (c *nlConn) do(m *nlMsg) error {
	seq := c.seq.Add(1)
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(m.body))
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(m.body)))
	binary.NativeEndian.PutUint16(b[4:], m.typ)
	binary.NativeEndian.PutUint16(b[6:], m.flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, m.body...)
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, r := range msgs {
			if r.Header.Seq != seq || r.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(r.Data) < 4 {
				return errors.New("netlink: short error message")
			}
			if e := int32(binary.NativeEndian.Uint32(r.Data[0:4])); e != 0 {
				return unix.Errno(-e)
			}
			return nil
		}
	}
}

func ifinfomsg(index int, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

// setLink renames (name != ""), sets the MTU (mtu != 0) and brings the link up.
func (c *nlConn) setLink(index int, name string, mtu uint32) error {
	if name != "" || mtu != 0 {
		m := &nlMsg{typ: unix.RTM_NEWLINK, body: ifinfomsg(index, 0, 0)}
		if name != "" {
			m.attr(unix.IFLA_IFNAME, append([]byte(name), 0))
		}
		if mtu != 0 {
			m.attr(unix.IFLA_MTU, u32(mtu))
		}
		if err := c.do(m); err != nil {
			return fmt.Errorf("set link %d name %q mtu %d: %w", index, name, mtu, err)
		}
	}
	if err := c.do(&nlMsg{typ: unix.RTM_NEWLINK, body: ifinfomsg(index, unix.IFF_UP, unix.IFF_UP)}); err != nil {
		return fmt.Errorf("set link %d up: %w", index, err)
	}
	return nil
}

// setMAC gives the link a new hardware address. A driver without live
// address change (virtio-net without VIRTIO_NET_F_CTRL_MAC_ADDR, for one)
// refuses it with EBUSY while the link is up, so an up link is set down
// first; setLink brings it up again.
func (c *nlConn) setMAC(index int, up bool, mac net.HardwareAddr) error {
	if up {
		if err := c.do(&nlMsg{typ: unix.RTM_NEWLINK, body: ifinfomsg(index, 0, unix.IFF_UP)}); err != nil {
			return fmt.Errorf("set link %d down: %w", index, err)
		}
	}
	m := &nlMsg{typ: unix.RTM_NEWLINK, body: ifinfomsg(index, 0, 0)}
	m.attr(unix.IFLA_ADDRESS, mac)
	if err := c.do(m); err != nil {
		return fmt.Errorf("set link %d MAC %s: %w", index, mac, err)
	}
	return nil
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addAddr adds an address; one already there is fine.
func (c *nlConn) addAddr(index int, p netip.Prefix) error {
	a := p.Addr().Unmap()
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0] = family(a)
	body[1] = uint8(p.Bits())
	binary.NativeEndian.PutUint32(body[4:], uint32(index))
	m := &nlMsg{typ: unix.RTM_NEWADDR, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, body: body}
	m.attr(unix.IFA_LOCAL, a.AsSlice())
	m.attr(unix.IFA_ADDRESS, a.AsSlice())
	if err := c.do(m); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	return nil
}

// addRoute adds a main-table unicast route; one already there is fine.
func (c *nlConn) addRoute(dst netip.Prefix, def bool, gw netip.Addr, oif int, src netip.Addr, metric uint32) error {
	fam := uint8(unix.AF_INET)
	switch {
	case gw.IsValid():
		fam = family(gw.Unmap())
	case !def:
		fam = family(dst.Addr().Unmap())
	}
	body := make([]byte, unix.SizeofRtMsg)
	body[0] = fam
	if !def {
		body[1] = uint8(dst.Bits())
	}
	body[4] = unix.RT_TABLE_MAIN
	body[5] = unix.RTPROT_BOOT
	body[6] = unix.RT_SCOPE_UNIVERSE
	if !gw.IsValid() {
		body[6] = unix.RT_SCOPE_LINK
	}
	body[7] = unix.RTN_UNICAST
	m := &nlMsg{typ: unix.RTM_NEWROUTE, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, body: body}
	if !def {
		m.attr(unix.RTA_DST, dst.Addr().Unmap().AsSlice())
	}
	if gw.IsValid() {
		m.attr(unix.RTA_GATEWAY, gw.Unmap().AsSlice())
	}
	if oif > 0 {
		m.attr(unix.RTA_OIF, u32(uint32(oif)))
	}
	if src.IsValid() {
		m.attr(unix.RTA_PREFSRC, src.Unmap().AsSlice())
	}
	if metric != 0 {
		m.attr(unix.RTA_PRIORITY, u32(metric))
	}
	if err := c.do(m); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add route: %w", err)
	}
	return nil
}

// linkByMAC finds a link by hardware address.
func linkByMAC(mac net.HardwareAddr) (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var seen []string
	for i := range ifs {
		if ifs[i].HardwareAddr.String() == mac.String() {
			return &ifs[i], nil
		}
		seen = append(seen, ifs[i].Name+"="+ifs[i].HardwareAddr.String())
	}
	return nil, fmt.Errorf("no link with MAC %s (links: %v): %w", mac, seen, unix.ENODEV)
}

// LoopbackUp brings lo up.
func LoopbackUp() error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	c, err := openNetlink()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.setLink(lo.Index, "", 0)
}
