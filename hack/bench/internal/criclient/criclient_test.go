package criclient

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI answers Version (saying how long the call had left), a
// ListPodSandbox larger than gRPC's default 4 MiB, and ImageStatus.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
}

func (fakeCRI) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	v := "no deadline"
	if d, ok := ctx.Deadline(); ok {
		v = time.Until(d).Round(time.Minute).String()
	}
	return &runtimeapi.VersionResponse{RuntimeName: "fake", RuntimeVersion: v}, nil
}

func (fakeCRI) ListPodSandbox(_ context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	big := strings.Repeat("x", 5<<20)
	return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
		{Id: "p1", Labels: map[string]string{LabelRun: r.GetFilter().GetLabelSelector()[LabelRun], "big": big}}}}, nil
}

func (fakeCRI) ImageStatus(_ context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:1", RepoTags: []string{r.GetImage().GetImage()}}}, nil
}

func TestClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, fakeCRI{})
	runtimeapi.RegisterImageServiceServer(srv, fakeCRI{})
	go srv.Serve(l)
	defer srv.Stop()

	c, err := Dial(sock, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := c.RPC(context.Background())
	defer cancel()
	v, err := c.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetRuntimeName() != "fake" || v.GetRuntimeVersion() != "3m0s" {
		t.Errorf("version %q %q: the call's bound is not Timeout", v.GetRuntimeName(), v.GetRuntimeVersion())
	}
	pods, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{LabelRun: "r1"}}})
	if err != nil {
		t.Fatalf("a 5 MiB reply: %v", err)
	}
	if len(pods.GetItems()) != 1 || pods.GetItems()[0].GetLabels()[LabelRun] != "r1" {
		t.Errorf("pods %d", len(pods.GetItems()))
	}
	is, err := c.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	if err != nil || is.GetImage().GetRepoTags()[0] != "busybox" {
		t.Errorf("image status %v %v", is, err)
	}
}
