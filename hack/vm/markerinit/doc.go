// Command markerinit is the trivial /init of the "bare guest boot" that the
// boot benchmark (hack/bench/vmboot) compares the agent against: the same
// kernel, the same modules and the same VM configuration, but a PID 1 that only
// mounts /proc, /sys and /dev, prints a marker, loads the modules and powers
// the VM off. It is a static Go binary (CGO_ENABLED=0); hack/vm/guest-image.sh
// puts it at /init of _output/guest/initramfs-marker.cpio.
//
// It prints two lines on the console, each with the guest's CLOCK_BOOTTIME in
// microseconds (time since the kernel started its clock):
//
//	MAGNETAR-MARKER init boottime_us=N
//	MAGNETAR-MARKER modules n=N ms=M boottime_us=N
//
// The module list is the initramfs's load-order file (one file name per line,
// relative to /modules, already in dependency order), loaded with
// finit_module(2). With markerinit.hold on the kernel command line it does not
// power off but waits (for a test that kills the VM).
package main
