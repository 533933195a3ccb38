package ctrdstore

import (
	"context"
	"fmt"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// NamespaceHeader is the gRPC metadata key that names the containerd
// namespace of a request (containerd's pkg/namespaces GRPCHeader).
const NamespaceHeader = "containerd-namespace"

// Client is a client of containerd's namespaces and sandbox store services.
type Client struct {
	addr string
	conn *grpc.ClientConn
}

// New makes a client of the containerd whose gRPC socket is addr (a path).
// It connects on first use, and again after containerd restarts.
func New(addr string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn}, nil
}

// Knows reports whether a namespace of containerd's sandbox store holds the
// sandbox id. An error means containerd could not say (it is away, or
// refused): nothing is known then.
func (c *Client) Knows(ctx context.Context, id string) (bool, error) {
	nss, err := namespacesapi.NewNamespacesClient(c.conn).List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		return false, fmt.Errorf("containerd at %s: list namespaces: %w", c.addr, err)
	}
	store := sandboxapi.NewStoreClient(c.conn)
	for _, ns := range nss.GetNamespaces() {
		nctx := metadata.AppendToOutgoingContext(ctx, NamespaceHeader, ns.GetName())
		_, err := store.Get(nctx, &sandboxapi.StoreGetRequest{SandboxID: id})
		switch status.Code(err) {
		case codes.OK:
			return true, nil
		case codes.NotFound:
			continue
		}
		return false, fmt.Errorf("containerd at %s: sandbox %s in namespace %s: %w", c.addr, id, ns.GetName(), err)
	}
	return false, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
