package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const podURL = "type.googleapis.com/runtime.v1.PodSandboxConfig"

func main() {
	address := flag.String("address", "", "the daemon's Sandbox API socket (listen)")
	sandboxer := flag.String("sandboxer", "", "the sandboxer name in requests (containerd's proxy plugin name)")
	cgroupParent := flag.String("cgroup-parent", "", "create: the pod's cgroup parent")
	timeout := flag.Duration("timeout", time.Minute, "bound on the call")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: sbctl -address SOCKET [-sandboxer NAME] [-cgroup-parent P] create|start|status|stop|shutdown ID")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *address == "" || flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	cmd, id := flag.Arg(0), flag.Arg(1)
	conn, err := grpc.NewClient("unix://"+*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sbctl: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := sandboxapi.NewControllerClient(conn)
	switch cmd {
	case "create":
		cfg, _ := proto.Marshal(&runtime.PodSandboxConfig{
			Metadata: &runtime.PodSandboxMetadata{Name: id, Uid: id, Namespace: "sbctl"},
			Hostname: "sbctl",
			Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: *cgroupParent,
				SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}},
		})
		_, err = c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: *sandboxer,
			Options: &anypb.Any{TypeUrl: podURL, Value: cfg}, Sandbox: &types.Sandbox{SandboxID: id, Sandboxer: *sandboxer}})
	case "start":
		_, err = c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id, Sandboxer: *sandboxer})
	case "status":
		var r *sandboxapi.ControllerStatusResponse
		if r, err = c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id, Sandboxer: *sandboxer}); err == nil {
			fmt.Printf("%s %s pid %d\n", r.GetSandboxID(), r.GetState(), r.GetPid())
		}
	case "stop":
		_, err = c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: id, Sandboxer: *sandboxer})
	case "shutdown":
		_, err = c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id, Sandboxer: *sandboxer})
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sbctl: %s %s: %s: %s\n", cmd, id, status.Code(err), status.Convert(err).Message())
		os.Exit(1)
	}
}
