// Command gvisor-sandboxer runs Kubernetes pods in gVisor application-kernel
// sandboxes (runsc) under containerd's Sandbox API: one sandbox per pod, no
// shim and no process of the sandboxer's per pod.
package main

import (
	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/gvisorsb"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

func main() { daemon.Main(gvisorsb.Sandboxer()) }
