// Package mount mounts the rootfs containerd describes for a task (a list of
// mounts, usually one overlay with host lower/upper/work dirs) onto a target
// directory, with rollback on failure, and unmounts it again.
package mount
