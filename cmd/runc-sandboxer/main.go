// Command runc-sandboxer runs Kubernetes pods as plain Linux namespaces under
// containerd's Sandbox API: no pause container and no shim per pod.
package main

import (
	"github.com/magnetar-runtime/magnetar/cmd/runc-sandboxer/internal/runcsb"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

func main() { daemon.Main(runcsb.Sandboxer()) }
