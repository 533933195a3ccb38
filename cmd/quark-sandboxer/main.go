// Command quark-sandboxer runs every Kubernetes pod in its own Quark
// Containers sandbox (an application kernel in a KVM virtual machine)
// under containerd's Sandbox API: no shim per pod, no pause container.
// Quark runs the pod's containers; this daemon serves containerd's Task API
// for them and forwards each call to the sandbox's own task server.
package main

import (
	"github.com/magnetar-runtime/magnetar/cmd/quark-sandboxer/internal/quarksb"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

func main() { daemon.Main(quarksb.Sandboxer()) }
