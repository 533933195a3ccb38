package cgroups

import (
	"path/filepath"
	"strings"
)

// PodPath is the cgroup of a pod whose host processes (a VMM, an
// application kernel) a sandboxer puts in one cgroup of their own: below
// the pod's CRI cgroup parent, in its cgroupfs ("/kubepods/pod1" ->
// "/kubepods/pod1/HANDLER-ID") or systemd form ("kubepods-pod1.slice" ->
// a scope "kubepods-pod1.slice:HANDLER:ID"), else "/HANDLER/ID".
func PodPath(handler, parent, id string) string {
	switch {
	case parent == "":
		return "/" + handler + "/" + id
	case strings.HasPrefix(parent, "/"):
		return filepath.Join(parent, handler+"-"+id)
	default:
		return parent + ":" + handler + ":" + id
	}
}
