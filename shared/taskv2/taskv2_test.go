package taskv2

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestWireIdentical: every message of the v2 proto has a v3 twin with the
// same fields (number, name, kind, cardinality, message type), and the two
// services have the same RPCs with twin types: what taskv2 relies on.
func TestWireIdentical(t *testing.T) {
	f2, f3 := taskv2.File_runtime_task_v2_shim_proto, taskv3.File_runtime_task_v3_shim_proto
	if f2.Messages().Len() != f3.Messages().Len() {
		t.Fatalf("messages: v2 has %d, v3 %d", f2.Messages().Len(), f3.Messages().Len())
	}
	for i := 0; i < f2.Messages().Len(); i++ {
		m2 := f2.Messages().Get(i)
		m3 := f3.Messages().ByName(m2.Name())
		if m3 == nil {
			t.Errorf("v3 has no message %s", m2.Name())
			continue
		}
		if a, b := fields(m2), fields(m3); !slices.Equal(a, b) {
			t.Errorf("%s: v2 fields %v, v3 %v", m2.Name(), a, b)
		}
	}
	s2, s3 := f2.Services().Get(0), f3.Services().Get(0)
	if string(s2.FullName()) != ServiceV2 || string(s3.FullName()) != ServiceV3 {
		t.Fatalf("services: %s, %s", s2.FullName(), s3.FullName())
	}
	if s2.Methods().Len() != s3.Methods().Len() {
		t.Fatalf("RPCs: v2 %d, v3 %d", s2.Methods().Len(), s3.Methods().Len())
	}
	desc := serviceDesc(&fakeV3{})
	for i := 0; i < s2.Methods().Len(); i++ {
		m2 := s2.Methods().Get(i)
		m3 := s3.Methods().ByName(m2.Name())
		if m3 == nil || m3.Input().Name() != m2.Input().Name() || m3.Output().Name() != m2.Output().Name() {
			t.Errorf("RPC %s differs in v3", m2.Name())
		}
		if _, ok := desc.Methods[string(m2.Name())]; !ok {
			t.Errorf("Register serves no %s", m2.Name())
		}
	}
	if len(desc.Methods) != s2.Methods().Len() {
		t.Errorf("Register serves %d methods, the v2 service has %d", len(desc.Methods), s2.Methods().Len())
	}
}

// fields describes a message's fields, package names left out.
func fields(m protoreflect.MessageDescriptor) []string {
	var out []string
	for i := 0; i < m.Fields().Len(); i++ {
		f := m.Fields().Get(i)
		typ := f.Kind().String()
		if f.Message() != nil {
			typ = string(f.Message().Name())
			if f.Message().ParentFile().Package() != m.ParentFile().Package() {
				typ = string(f.Message().FullName()) // a shared type: must be the same
			}
		}
		out = append(out, fmt.Sprintf("%s=%s/%s/%d", f.Name(), typ, f.Cardinality(), f.Number()))
	}
	return out
}

// fakeV3 answers Create, Wait and State; the rest panics (never called).
type fakeV3 struct {
	taskv3.TTRPCTaskService
	create *taskv3.CreateTaskRequest
}

func (f *fakeV3) Create(_ context.Context, r *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	f.create = r
	return &taskv3.CreateTaskResponse{Pid: 42}, nil
}

func (f *fakeV3) Wait(context.Context, *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	return &taskv3.WaitResponse{ExitStatus: 7, ExitedAt: timestamppb.New(timestamppb.Now().AsTime())}, nil
}

func (f *fakeV3) State(_ context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
}

func (f *fakeV3) Shutdown(context.Context, *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// fakeV2 is a v2 server as Quark's is: the generated v2 registration.
type fakeV2 struct {
	taskv2.TTRPCTaskService
	create *taskv2.CreateTaskRequest
}

func (f *fakeV2) Create(_ context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	f.create = r
	return &taskv2.CreateTaskResponse{Pid: 43}, nil
}

// serve serves register's services on a unix socket and returns a client
// made with opts.
func serve(t *testing.T, register func(*ttrpc.Server), opts ...ttrpc.ClientOpts) *ttrpc.Client {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn, opts...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// createV3 is a Create with every kind of field set.
func createV3() *taskv3.CreateTaskRequest {
	return &taskv3.CreateTaskRequest{ID: "c1", Bundle: "/c1", Terminal: true, Stdin: "/c1/stdin", Stdout: "/c1/stdout",
		Rootfs:  []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a"}}},
		Options: &anypb.Any{TypeUrl: "x/y", Value: []byte{1, 2}}}
}

// TestClientToV2Server: the v3 client reaches a server that registered the
// generated v2 service, every field intact; without the interceptor the
// same call finds no service.
func TestClientToV2Server(t *testing.T) {
	fake := &fakeV2{}
	reg := func(s *ttrpc.Server) { taskv2.RegisterTTRPCTaskService(s, fake) }
	c := serve(t, reg, ttrpc.WithChainUnaryClientInterceptor(ClientInterceptor))
	resp, err := Client(c).Create(context.Background(), createV3())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.GetPid() != 43 {
		t.Errorf("pid %d", resp.GetPid())
	}
	want, _ := proto.Marshal(createV3())
	got, _ := proto.Marshal(fake.create)
	if string(want) != string(got) {
		t.Errorf("the v2 server got %v", fake.create)
	}

	plain := serve(t, reg)
	if _, err := taskv3.NewTTRPCTaskClient(plain).Create(context.Background(), createV3()); err == nil {
		t.Error("a v3 client without the interceptor reached the v2-only server")
	}
}

// TestRegisterServesV3AsV2: a v2 client (as Kuasar's containerd would be)
// reaches a v3 implementation; errors keep their code.
func TestRegisterServesV3AsV2(t *testing.T) {
	fake := &fakeV3{}
	c := serve(t, func(s *ttrpc.Server) { Register(s, fake) })
	v2 := taskv2.NewTTRPCTaskClient(c)
	req := &taskv2.CreateTaskRequest{ID: "c1", Bundle: "/c1", Stdout: "/c1/stdout",
		Rootfs: []*types.Mount{{Type: "bind", Source: "/x", Options: []string{"rbind"}}}}
	resp, err := v2.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.GetPid() != 42 || fake.create.GetBundle() != "/c1" || fake.create.GetStdout() != "/c1/stdout" ||
		len(fake.create.GetRootfs()) != 1 || fake.create.GetRootfs()[0].GetSource() != "/x" {
		t.Errorf("resp %v, the v3 service got %v", resp, fake.create)
	}
	w, err := v2.Wait(context.Background(), &taskv2.WaitRequest{ID: "c1"})
	if err != nil || w.GetExitStatus() != 7 || w.GetExitedAt() == nil {
		t.Errorf("Wait: %v, %v", w, err)
	}
	_, err = v2.State(context.Background(), &taskv2.StateRequest{ID: "nope"})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("State: %v, want NotFound", err)
	}
	// the v3 name is not served
	if _, err := taskv3.NewTTRPCTaskClient(c).Shutdown(context.Background(), &taskv3.ShutdownRequest{}); err == nil {
		t.Error("the v3 service name is served too")
	}
}
