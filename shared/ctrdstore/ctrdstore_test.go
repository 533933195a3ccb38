package ctrdstore

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// standIn is a stand-in for containerd's namespaces and sandbox store
// services, as strict as containerd about what a request must carry: a
// store request without a namespace is refused (FailedPrecondition, as
// containerd's namespaces.NamespaceRequired), an empty id is invalid, an id
// a namespace does not hold is NotFound.
type standIn struct {
	held    map[string][]string // namespace -> sandbox ids
	failGet error
}

type namespaces struct {
	namespacesapi.UnimplementedNamespacesServer
	*standIn
}

type store struct {
	sandboxapi.UnimplementedStoreServer
	*standIn
}

func (s namespaces) List(context.Context, *namespacesapi.ListNamespacesRequest) (*namespacesapi.ListNamespacesResponse, error) {
	r := &namespacesapi.ListNamespacesResponse{}
	for ns := range s.held {
		r.Namespaces = append(r.Namespaces, &namespacesapi.Namespace{Name: ns})
	}
	return r, nil
}

func (s store) Get(ctx context.Context, req *sandboxapi.StoreGetRequest) (*sandboxapi.StoreGetResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	nss := md.Get(NamespaceHeader)
	if len(nss) != 1 || nss[0] == "" {
		return nil, status.Error(codes.FailedPrecondition, "namespace is required: failed precondition")
	}
	if req.GetSandboxID() == "" {
		return nil, status.Error(codes.InvalidArgument, "sandbox id must not be empty: invalid argument")
	}
	if s.failGet != nil {
		return nil, s.failGet
	}
	for _, id := range s.held[nss[0]] {
		if id == req.GetSandboxID() {
			return &sandboxapi.StoreGetResponse{Sandbox: &types.Sandbox{SandboxID: id}}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "sandbox %q in namespace %q: not found", req.GetSandboxID(), nss[0])
}

func serve(t *testing.T, s *standIn) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	namespacesapi.RegisterNamespacesServer(srv, namespaces{standIn: s})
	sandboxapi.RegisterStoreServer(srv, store{standIn: s})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

func knows(t *testing.T, addr, id string) (bool, error) {
	t.Helper()
	c, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Knows(ctx, id)
}

func TestKnows(t *testing.T) {
	addr := serve(t, &standIn{held: map[string][]string{"default": {"a"}, "k8s.io": {"b", "c"}}})
	for id, want := range map[string]bool{"a": true, "c": true, "d": false} {
		got, err := knows(t, addr, id)
		if err != nil || got != want {
			t.Errorf("Knows(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
}

// An answer that is neither the record nor NotFound is not "forgotten".
func TestKnowsErrorIsNotForgotten(t *testing.T) {
	addr := serve(t, &standIn{held: map[string][]string{"k8s.io": {"b"}}, failGet: status.Error(codes.Unavailable, "closing")})
	if got, err := knows(t, addr, "x"); err == nil {
		t.Fatalf("Knows = %v with a store that fails; want an error", got)
	}
	if got, err := knows(t, filepath.Join(t.TempDir(), "none.sock"), "x"); err == nil {
		t.Fatalf("Knows = %v with no containerd; want an error", got)
	}
}
