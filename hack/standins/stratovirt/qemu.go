package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// qemuBinary is the QEMU under the stand-in (MAGNETAR_QEMU, as for the
// guest image tools).
func qemuBinary() string {
	if q := os.Getenv("MAGNETAR_QEMU"); q != "" {
		return q
	}
	return "qemu-system-x86_64"
}

// escape doubles commas, QEMU's escape inside an option list.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// qemuArgs translates the plan to QEMU 7.2's microvm under TCG: the same
// devices on virtio-mmio, StratoVirt's ids replaced by QEMU ones (QEMU is
// stricter about ids), the taps and the vhost-vsock descriptor at the
// numbers StratoVirt was given (fds, which QEMU inherits), the serial
// console to the same file, and tsc_early_khz (tscKHz, 0: none) added to
// the kernel command line: under TCG a microvm guest calibrates its TSC
// against the PIT, which fails now and then and hangs the boot. QEMU's
// microvm finds its devices through ACPI, where StratoVirt lists them on
// the kernel command line (see the package doc).
func qemuArgs(p *plan, tscKHz int) (args []string, fds []int) {
	c := p.cfg
	mem := strconv.FormatUint(c.memBytes>>20, 10)
	machine := "microvm"
	if c.memShare {
		machine += ",memory-backend=mem"
	}
	// TCG's translated-code buffer bounded as magnetar-vmm bounds it
	// (vm.tcg_buffer_mib): QEMU's 1 GiB default would be this stand-in's
	// memory, not StratoVirt's, in the pod's cgroup
	a := []string{"-machine", machine, "-accel", "tcg,thread=single,tb-size=64", "-cpu", "max"}
	if c.memShare {
		// vhost-user-fs maps the guest memory into virtiofsd
		a = append(a, "-object", "memory-backend-memfd,id=mem,size="+mem+"M,share=on")
	}
	a = append(a, "-m", mem, "-smp", strconv.Itoa(c.cpus),
		"-nodefaults", "-no-user-config", "-display", "none",
		// StratoVirt exits when its microvm guest reboots
		"-no-reboot",
		// libvhost-user refuses legacy virtio-mmio devices
		"-global", "virtio-mmio.force-legacy=false")
	if s := c.serial; s != nil {
		a = append(a, "-chardev", qemuChardev(s, "sv-serial"), "-serial", "chardev:sv-serial")
	}
	if p.vser != "" {
		a = append(a, "-device", "virtio-serial-device,id=sv-vser")
	}
	for i, pt := range p.ports {
		id := "sv-port" + strconv.Itoa(i)
		dev := "virtserialport"
		if pt.console {
			dev = "virtconsole"
		}
		a = append(a, "-chardev", qemuChardev(pt.chardev, id),
			"-device", fmt.Sprintf("%s,bus=sv-vser.0,chardev=%s,nr=%d", dev, id, pt.nr))
	}
	for i, f := range p.fs {
		id := "sv-fs" + strconv.Itoa(i)
		a = append(a, "-chardev", "socket,id="+id+",path="+escape(f.chardev.path),
			"-device", "vhost-user-fs-device,chardev="+id+",tag="+f.tag)
	}
	if v := p.vsock; v != nil {
		dev := "vhost-vsock-device,guest-cid=" + strconv.FormatUint(v.cid, 10)
		if v.vhostfd >= 0 {
			dev += ",vhostfd=" + strconv.Itoa(v.vhostfd)
			fds = append(fds, v.vhostfd)
		}
		a = append(a, "-device", dev)
	}
	for i, n := range p.nics {
		id := "sv-net" + strconv.Itoa(i)
		fd := strconv.Itoa(n.netdev.fds[0])
		fds = append(fds, n.netdev.fds[0])
		dev := "virtio-net-device,netdev=" + id
		if n.mac != "" {
			dev += ",mac=" + n.mac
		}
		a = append(a, "-netdev", "tap,id="+id+",fd="+fd, "-device", dev)
	}
	cmdline := strings.Join(c.append, " ")
	if tscKHz > 0 {
		cmdline = strings.TrimSpace(cmdline + " tsc_early_khz=" + strconv.Itoa(tscKHz))
	}
	a = append(a, "-kernel", c.kernel)
	if c.initrd != "" {
		a = append(a, "-initrd", c.initrd)
	}
	return append(a, "-append", cmdline), fds
}

// qemuChardev is a StratoVirt chardev as QEMU's.
func qemuChardev(cd *chardev, id string) string {
	switch cd.backend {
	case "socket":
		s := "socket,id=" + id + ",path=" + escape(cd.path)
		if cd.server {
			s += ",server=on"
		}
		if cd.nowait {
			s += ",wait=off"
		}
		return s
	case "file":
		return "file,id=" + id + ",path=" + escape(cd.path)
	}
	return "stdio,id=" + id
}
