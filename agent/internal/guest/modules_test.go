package guest

import (
	"testing"
)

func TestBootModules(t *testing.T) {
	serialFS := BootModules(Cmdline{Transport: Transport{Kind: "serial"}, Share: Share{Kind: "virtiofs"}}, false)
	for name, want := range map[string]bool{
		"virtio_mmio.ko": true, "virtio_console.ko": true, "fuse.ko": true, "virtiofs.ko": true, "virtio_net.ko": true,
		"virtio_pci.ko": false, "vsock.ko": false, "virtio_blk.ko": false, "erofs.ko": false, "crc32c-intel.ko": false,
	} {
		if got := serialFS(name); got != want {
			t.Errorf("serial+virtiofs on microvm: %s = %v, want %v", name, got, want)
		}
	}
	vsockPCI := BootModules(Cmdline{Transport: Transport{Kind: "vsock"}, Share: Share{Kind: "none"}}, true)
	for name, want := range map[string]bool{
		"vsock.ko": true, "vmw_vsock_virtio_transport.ko": true, "virtio_pci.ko.xz": true, "virtio_console.ko": false, "fuse.ko": false,
	} {
		if got := vsockPCI(name); got != want {
			t.Errorf("vsock on PCI: %s = %v, want %v", name, got, want)
		}
	}
}
