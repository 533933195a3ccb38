// Package vmtest holds the VM integration tests: the guest image from
// hack/vm/guest-image.sh booted in a QEMU microvm (hack/vm/guestvm), the
// agent reached over virtio-serial with shared/agentclient, containers run
// by the in-guest runc from bundles on a virtio-fs share.
//
// The tests skip, saying why, unless they run as root, QEMU and virtiofsd
// are installed and MAGNETAR_GUEST_IMAGE names the image directory
// (vmlinuz, initramfs.cpio, initramfs-marker.cpio). `make vm-test` builds the
// image, sets it and runs them serially (-p 1); each test checks in its
// cleanup that no QEMU or virtiofsd of its own, no socket and no run
// directory is left behind. Under TCG a boot takes 2–5 s; the timeouts are
// generous and nothing asserts on boot time (hack/bench/vmboot measures it).
package vmtest
