//go:build !linux

package transport

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/containerd/errdefs"
)

// ListenVsock is only implemented on Linux.
func ListenVsock(port uint32) (net.Listener, error) {
	return nil, fmt.Errorf("listen vsock port %d: %w", port, errdefs.ErrNotImplemented)
}

func dialVsock(_ context.Context, cid, port uint32) (net.Conn, error) {
	return nil, fmt.Errorf("dial vsock %d:%d: %w", cid, port, errdefs.ErrNotImplemented)
}

func makeRawIfTerminal(*os.File) (bool, error) { return false, nil }
