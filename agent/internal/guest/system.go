package guest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/agent/internal/service"
)

// System is the guest's service.System.
type System struct {
	// Etc is where resolv.conf goes ("/etc").
	Etc string
	// OnPowerOff runs before the power-off (flush logs); may be nil.
	OnPowerOff func(reason string)
}

var _ service.System = (*System)(nil)

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// SysctlExists checks that /proc/sys has the key.
func (s *System) SysctlExists(key string) error {
	fi, err := os.Stat(sysctlPath(key))
	if err != nil {
		return fmt.Errorf("%s: no such sysctl in this guest kernel", key)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory of sysctls, not one", key)
	}
	return nil
}

func (s *System) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }

func (s *System) WriteResolvConf(data []byte) error {
	etc := s.Etc
	if etc == "" {
		etc = "/etc"
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(etc, ".resolv.conf.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(etc, "resolv.conf"))
}

func (s *System) SetSysctl(key, value string) error {
	return os.WriteFile(sysctlPath(key), []byte(value), 0)
}

// findLink finds l's link by MAC, or by name without one. A link with
// l.SetMAC instead of l.MAC is the one a Setup before gave its new MAC
// (the host retries a Setup whose answer it lost); Validate makes sure that
// no other Link of the request selects that MAC.
func findLink(l service.Link) (*net.Interface, error) {
	if l.MAC == nil {
		return net.InterfaceByName(l.Name)
	}
	ifc, err := linkByMAC(l.MAC)
	if err != nil && l.SetMAC != nil {
		if done, err2 := linkByMAC(l.SetMAC); err2 == nil {
			return done, nil
		}
	}
	return ifc, err
}

func (s *System) ConfigureLink(l service.Link) error {
	ifc, err := findLink(l)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	c, err := openNetlink()
	if err != nil {
		return err
	}
	defer c.Close()
	// the MAC before anything else (a retried Setup finds it set already);
	// from here on the link is known by its index
	if l.SetMAC != nil && ifc.HardwareAddr.String() != l.SetMAC.String() {
		if err := c.setMAC(ifc.Index, ifc.Flags&net.FlagUp != 0, l.SetMAC); err != nil {
			return err
		}
		ifc.HardwareAddr = l.SetMAC
	}
	rename := ""
	if l.Name != "" && l.Name != ifc.Name {
		rename = l.Name
	}
	mtu := l.MTU
	if mtu != 0 && int(mtu) == ifc.MTU {
		mtu = 0
	}
	if err := c.setLink(ifc.Index, rename, mtu); err != nil {
		return err
	}
	for _, a := range l.Addrs {
		if err := c.addAddr(ifc.Index, a); err != nil {
			return err
		}
	}
	return nil
}

func (s *System) AddRoute(r service.RouteSpec) error {
	oif := 0
	if r.Device != "" {
		ifc, err := net.InterfaceByName(r.Device)
		if err != nil {
			return fmt.Errorf("device %s: %w: %w", r.Device, err, errdefs.ErrNotFound)
		}
		oif = ifc.Index
	}
	c, err := openNetlink()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.addRoute(r.Dst, r.Default, r.Gateway, oif, r.Src, r.Metric)
}

func (s *System) StepClock(d time.Duration) error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return err
	}
	t := time.Unix(ts.Unix()).Add(d)
	nts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &nts)
}

func (s *System) PowerOff(reason string) {
	log.L.WithField("reason", reason).Warn("powering off")
	if s.OnPowerOff != nil {
		s.OnPowerOff(reason)
	}
	PowerOff()
}
