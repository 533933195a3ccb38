// Package ctrdstore asks containerd whether its metadata store still holds a
// sandbox: a Magnetar daemon serves containerd, and a sandbox containerd no
// longer holds is one nobody will ever stop or shut down (see
// controller.WithForgotten).
//
// containerd's CRI records a pod in its sandbox store before it calls
// Controller.Create, and removes the record when the pod is removed or its
// RunPodSandbox is rolled back; a record lives in one containerd namespace
// (k8s.io for CRI). Knows lists the namespaces (Namespaces.List) and looks
// the id up in each (Store.Get under the "containerd-namespace" gRPC
// header), over containerd's gRPC socket: the sandbox store is not served
// on its ttrpc socket.
package ctrdstore
