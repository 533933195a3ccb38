// Package runcbe is the guest agent's container backend (task.Backend): it
// runs each container with the runc binary inside the VM, from a bundle the
// host put on the share.
//
// Create checks that the bundle lies inside the share (agentapi.ShareRoot)
// and that no rootfs mounts are passed (the host mounts the rootfs before
// sharing it), rewrites config.json for the guest (RewriteSpec: host
// namespace paths dropped so containers share the VM's network, IPC and UTS
// namespaces — the VM is the pod —, cgroupsPath /magnetar/<id>, AppArmor,
// SELinux and hooks dropped, bind sources confined to the share), writes the
// result under its own state dir (/run/magnetar/ctr/<id>) and calls
// `runc create` (--no-pivot when / is the initramfs, which pivot_root
// refuses) with stdio from shared/stdio. The container's init is
// re-parented to the agent (PID 1) when runc exits; its exit comes from the
// reaper by pid (the Waiter given to shared/runcproc, which runs the init
// and exec processes and the runc calls, as in the runc sandboxer). Execs use `runc exec --detach`, Pids `runc ps`, Update
// `runc update`, Pause/Resume `runc pause/resume`. Stats and OOM events
// read the container's cgroup v2 files directly (cgroup.go): linking
// containerd/cgroups' managers would add ~2 MB (cilium/ebpf, dbus,
// go-systemd) to a binary every boot unpacks; on a v1-only guest kernel
// Stats answers NotImplemented.
package runcbe
