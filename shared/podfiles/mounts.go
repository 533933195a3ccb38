package podfiles

import (
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Mount makes a container's spec use its pod's files: a bind of each file
// Write made in dir onto /etc/<name> where the spec mounts nothing there
// (read-only when the container's root is), and, when shm is set, a bind of
// the pod's /dev/shm (shm) instead of the spec's private tmpfs, or where
// the spec mounts none.
func Mount(sp *specs.Spec, dir, shm string) {
	ro := sp.Root != nil && sp.Root.Readonly
	has := map[string]int{}
	for i, m := range sp.Mounts {
		has[m.Destination] = i
	}
	for _, name := range Names {
		dst := "/etc/" + name
		if _, ok := has[dst]; ok {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: filepath.Join(dir, name), Options: opts})
	}
	if shm == "" {
		return
	}
	m := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}
	if i, ok := has["/dev/shm"]; ok {
		if sp.Mounts[i].Type == "tmpfs" { // the default private tmpfs: the pod's instead
			sp.Mounts[i] = m
		}
		return
	}
	sp.Mounts = append(sp.Mounts, m)
}
