// Package guestvm starts a guest image (hack/vm/guest-image.sh) in a QEMU
// microvm for the VM integration tests (hack/vm/vmtest) and the boot
// benchmark (hack/bench/vmboot). It is test tooling, not the vmm sandboxer's
// QEMU driver: one VM per Start, everything it creates below one run
// directory that Close removes.
//
// The VM is always the same shape, so the agent image and the bare "marker"
// image boot the same configuration:
//
//	qemu-system-x86_64 -machine microvm,memory-backend=mem -accel tcg -cpu max
//	  -object memory-backend-memfd,id=mem,size=<M>M,share=on -m <M> -smp <n>
//	  -nodefaults -no-user-config -display none -no-reboot -serial stdio
//	  -qmp unix:<dir>/qmp.sock,server=on,wait=off
//	  -global virtio-mmio.force-legacy=false
//	  -device virtio-serial-device,id=vser0
//	  -chardev socket,id=agent,path=<dir>/agent.sock,server=on,wait=off
//	  -device virtserialport,bus=vser0.0,chardev=agent,name=<port>
//	  -chardev socket,id=vfs,path=<dir>/virtiofs.sock
//	  -device vhost-user-fs-device,chardev=vfs,tag=<tag>
//	  -kernel vmlinuz -initrd initramfs.cpio
//	  -append "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=<host TSC kHz> ..."
//
// The share is served by Debian's C virtiofsd (/usr/lib/qemu/virtiofsd,
// qemu-system-common 7.2), which needs shared guest memory (memfd, share=on)
// and modern virtio-mmio (force-legacy=false; libvhost-user rejects legacy
// devices). tsc_early_khz avoids the intermittent TSC calibration hang of
// microvm under TCG (no HPET, no PM timer: notes/vm-host.md §5).
//
// Acceleration: MAGNETAR_VM_ACCEL=tcg|kvm|auto (default auto). auto picks kvm
// only when /dev/kvm opens and the CPU flags show VMX or SVM; a PVM host (this
// machine kind) has neither and can run a normal guest only through KVM's
// instruction emulator, which fails in early boot, so it gets tcg.
package guestvm
