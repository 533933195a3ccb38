package podnet

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
)

// HoldTaps makes a tap per name (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, one
// queue, not persistent, down) in the holding namespace at holdPath, for a
// VM booted before the pod it will serve (a warm pool). The caller gives the
// descriptors to the VMM and closes its copies; Adopt later moves the taps
// into the pod's namespace. On error nothing it made remains.
func HoldTaps(ctx context.Context, holdPath string, names []string) (files []*os.File, retErr error) {
	err := inNetNS(holdPath, func(h *netlink.Handle) error {
		for _, name := range names {
			l := Link{Tap: name}
			if _, err := makeTap(h, &l); err != nil {
				if l.TapFile != nil {
					l.TapFile.Close()
				}
				return err
			}
			files = append(files, l.TapFile)
		}
		return nil
	})
	if err != nil {
		// closing the descriptors removes the taps (not persistent)
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("holding taps in %s: %w", holdPath, err)
	}
	return files, nil
}

// ErrLinkCount is Adopt's refusal of a pod whose interfaces are not as many
// as the taps of the VM (the caller boots a VM for it instead).
var ErrLinkCount = fmt.Errorf("pod interfaces and VM NICs differ in number: %w", errdefs.ErrFailedPrecondition)

// Adopt is Attach for a VM that runs already: instead of making taps, it
// moves the VM's taps (taps, in order, from the holding namespace at
// holdPath: see HoldTaps) into the pod's namespace at netnsPath, names them
// as Attach would and joins them to the pod interfaces in ifindex order. A
// tap keeps its VMM's descriptor across the move. A pod with another number
// of interfaces than taps is refused with ErrLinkCount before anything
// moves. The Network returned has no TapFile (the VMM holds the taps);
// Detach undoes it as it undoes Attach. On any other error the taps that
// moved stay in the pod's namespace, where they go with the VM (the caller
// destroys it: a VM serves one pod).
func Adopt(ctx context.Context, netnsPath, holdPath string, taps []string) (*Network, error) {
	if netnsPath == "" {
		return nil, fmt.Errorf("adopt: no network namespace path: %w", errdefs.ErrInvalidArgument)
	}
	// what the pod has, before anything moves
	if _, err := adoptIn(ctx, netnsPath, taps, false); err != nil {
		return nil, err
	}
	if err := moveTaps(holdPath, netnsPath, taps); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", netnsPath, err)
	}
	n, err := adoptIn(ctx, netnsPath, taps, true)
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField("netns", netnsPath).Debugf("adopted %d taps", len(taps))
	return n, nil
}

// adoptIn lists the pod interfaces of the namespace at netnsPath, checks
// that there are as many as taps, and with join, joins the taps (moved into
// the namespace) to them.
func adoptIn(ctx context.Context, netnsPath string, taps []string, joinTaps bool) (*Network, error) {
	n := &Network{NetNS: netnsPath}
	err := inNetNS(netnsPath, func(h *netlink.Handle) error {
		pod, err := podLinks(ctx, h, n)
		if err != nil {
			return err
		}
		if len(pod) != len(taps) {
			return fmt.Errorf("%d pod interfaces, %d VM NICs: %w", len(pod), len(taps), ErrLinkCount)
		}
		if !joinTaps {
			return nil
		}
		return join(ctx, h, n, pod, func(i int) (netlink.Link, error) { return renameTap(h, taps[i], n.Links[i].Tap) })
	})
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", netnsPath, err)
	}
	return n, nil
}

// moveTaps moves the taps named taps from the namespace at from into the
// one at to.
func moveTaps(from, to string, taps []string) error {
	dst, err := os.Open(to)
	if err != nil {
		return err
	}
	defer dst.Close()
	return inNetNS(from, func(h *netlink.Handle) error {
		var errs []error
		for _, name := range taps {
			l, err := h.LinkByName(name)
			if err != nil {
				errs = append(errs, fmt.Errorf("find tap %s: %w", name, err))
				continue
			}
			if l.Type() != "tuntap" {
				errs = append(errs, fmt.Errorf("%s is a %s, not a tap", name, l.Type()))
				continue
			}
			if err := h.LinkSetNsFd(l, int(dst.Fd())); err != nil {
				errs = append(errs, fmt.Errorf("move tap %s: %w", name, err))
			}
		}
		return errors.Join(errs...)
	})
}

// renameTap names the tap from (down) to.
func renameTap(h *netlink.Handle, from, to string) (netlink.Link, error) {
	l, err := h.LinkByName(from)
	if err != nil {
		return nil, fmt.Errorf("find tap %s: %w", from, err)
	}
	if from != to {
		if err := h.LinkSetName(l, to); err != nil {
			return nil, fmt.Errorf("rename tap %s to %s: %w", from, to, err)
		}
	}
	return h.LinkByName(to)
}
