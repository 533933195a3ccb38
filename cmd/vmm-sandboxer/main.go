// Command vmm-sandboxer runs every Kubernetes pod in its own micro-VM under
// containerd's Sandbox API: no shim per pod, no pause container. The VM's
// guest agent (magnetar-agent) runs the pod's containers; this daemon serves
// containerd's Task API for them and forwards each call to the pod's agent.
package main

import (
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vmmsb"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

func main() { daemon.Main(vmmsb.Sandboxer()) }
