// Package guest is what the agent does to the VM as its PID 1: parse the
// kernel command line (magnetar.transport, magnetar.share, magnetar.log),
// mount the basic file systems and cgroups, load the kernel modules the
// image ships (finit_module in /modules/load order), mount the host share,
// find the virtio-serial port by name, and power off. System implements the
// agent service's System: hostname, resolv.conf, sysctls, links, addresses
// and routes (a small rtnetlink client: no external netlink library),
// stepping the clock.
//
// The layout and keys are documented in agent/doc.go; the key names and
// defaults are constants in shared/agentapi.
package guest
