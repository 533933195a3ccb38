// Package cgroups gives every sandboxer one small view of a cgroup, whatever
// the host runs: cgroup v1 (legacy or hybrid) or the unified v2 hierarchy.
//
// It wraps github.com/containerd/cgroups/v3 for loading, creating, deleting
// and reading statistics, so that [Cgroup.Metrics] returns exactly the
// protobuf messages containerd's CRI plugin decodes from Task.Stats and
// Controller.Metrics: *cgroup1/stats.Metrics under the type URL
// "io.containerd.cgroups.v1.Metrics" on v1 and hybrid hosts, and
// *cgroup2/stats.Metrics under "io.containerd.cgroups.v2.Metrics" on unified
// hosts. [Sum] adds the metrics of several cgroups (the containers of a pod)
// into one message of the same kind.
//
// # Paths
//
// A cgroup is named by an OCI linux.cgroupsPath. Two forms are accepted (see
// [ResolvePath]):
//
//   - the cgroupfs form, an absolute clean path such as
//     "/kubepods/besteffort/pod1234/abcd", used as is below the root of
//     every hierarchy;
//   - the systemd form "slice:prefix:name", as runc's systemd driver takes
//     it, converted to the directory systemd creates for that unit:
//     "system.slice:cri-containerd:abcd" is
//     "/system.slice/cri-containerd-abcd.scope" and
//     "kubepods-besteffort-pod1.slice:cri-containerd:abcd" is
//     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abcd.scope".
//
// The systemd form is only translated: this package talks to cgroupfs, never
// to systemd over D-Bus, so a limit written with [Cgroup.Update] on a
// systemd-managed unit may be reset by systemd on its next reload.
//
// # Updates
//
// [Cgroup.Update] applies resources field by field rather than controller by
// controller: the library's own Update stops at the first failure, recreates
// directories that have been removed, and writes "-1" where cgroup v2 wants
// "max". Each OCI field is mapped to its control file; a field whose
// controller or file the host lacks (hugepage limits without the hugetlb
// controller, swap limits without swap accounting, realtime CPU on v2, ...)
// is skipped and named in an error wrapping errdefs.ErrNotImplemented, after
// everything else has been written.
//
// # OOM events
//
// [Cgroup.OOMEvents] delivers one value per OOM kill counted by the kernel:
// on v1 it registers an eventfd on memory.oom_control and, on each
// notification, reads the oom_kill counter; on v2 it watches memory.events
// with inotify. Counting kills rather than notifications means no kill is
// lost or doubled when events arrive in bursts or late.
package cgroups
