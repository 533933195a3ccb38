package cgroups

import (
	"fmt"
	"os"
	"strings"
)

// Within reports whether process pid runs in the cgroup named by
// cgroupsPath or in one below it: by its cgroup v2 path on a unified host,
// by its memory hierarchy's path on a v1 or hybrid one (/proc/PID/cgroup,
// as this process's cgroup namespace shows them). A runtime that put
// itself in a leaf of the pod's cgroup, beside the cgroups of its
// containers, is within the pod's cgroup: moving it up into the pod's own
// would break cgroup v2's rule that a cgroup with processes has no child
// with controllers.
func Within(cgroupsPath string, pid int) (bool, error) {
	p, err := ResolvePath(cgroupsPath)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false, err
	}
	unified, _ := Mode()
	return within(string(data), p, unified), nil
}

// within is Within on the text of /proc/PID/cgroup.
func within(procCgroup, p string, unified bool) bool {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mine := false
		if unified {
			mine = parts[0] == "0" && parts[1] == ""
		} else {
			for _, c := range strings.Split(parts[1], ",") {
				mine = mine || c == "memory"
			}
		}
		if mine {
			return parts[2] == p || strings.HasPrefix(parts[2], p+"/")
		}
	}
	return false
}
