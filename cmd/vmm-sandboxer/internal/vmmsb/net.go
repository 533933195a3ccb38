package vmmsb

import (
	"context"
	"os"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/podnet"
)

// network prepares a pod's network namespace for its VM (podnet; a fake in
// tests).
type network interface {
	// Attach makes a tap per pod interface, joined to it, and reads the
	// guest's view of the network. On error it leaves nothing.
	Attach(ctx context.Context, netns string) (*podnet.Network, error)
	// Detach removes what Attach made. Idempotent; a netns that is gone
	// already is fine.
	Detach(ctx context.Context, st podnet.State) error
	// HoldTaps makes taps for a pooled VM in the holding namespace.
	HoldTaps(ctx context.Context, hold string, names []string) ([]*os.File, error)
	// Adopt moves a pooled VM's taps into the pod's namespace and joins
	// them to its interfaces (podnet.ErrLinkCount: not as many).
	Adopt(ctx context.Context, netns, hold string, taps []string) (*podnet.Network, error)
}

// podNetwork is the network of real pods.
type podNetwork struct{}

func (podNetwork) Attach(ctx context.Context, netns string) (*podnet.Network, error) {
	return podnet.Attach(ctx, netns)
}

func (podNetwork) Detach(ctx context.Context, st podnet.State) error { return podnet.Detach(ctx, st) }

func (podNetwork) HoldTaps(ctx context.Context, hold string, names []string) ([]*os.File, error) {
	return podnet.HoldTaps(ctx, hold, names)
}

func (podNetwork) Adopt(ctx context.Context, netns, hold string, taps []string) (*podnet.Network, error) {
	return podnet.Adopt(ctx, netns, hold, taps)
}
