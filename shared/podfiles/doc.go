// Package podfiles holds what every sandboxer does the same way with a CRI
// pod's identity: it checks the pod's configuration before anything is
// made (Check: host and user namespaces against the sandboxer's Rules,
// netns_path, hostname, sysctls), and writes the files containerd leaves
// to an external sandboxer for the pod's containers to bind-mount:
// /etc/hostname, /etc/hosts and /etc/resolv.conf (from the pod's DNS
// config, or the host's), and adds their mounts (and the pod's /dev/shm) to
// a container's spec (Mount).
package podfiles
