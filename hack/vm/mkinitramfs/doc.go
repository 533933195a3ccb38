// Command mkinitramfs writes a Linux initramfs as an uncompressed newc
// ("070701") cpio archive, byte-reproducibly: entries sorted by path, inode
// numbers assigned in that order, every owner root:root and every mtime fixed
// (SOURCE_DATE_EPOCH, default 0). Parent directories are implied (0755), and
// the skeleton every guest needs is always present: /dev (with the
// /dev/console character device 5:1, so PID 1 has a console before devtmpfs is
// mounted), /proc, /sys, /run, /tmp (1777) and /mnt. Writing the archive
// ourselves means no root-only mknod and no dependence on the host's cpio.
//
// Usage:
//
//	mkinitramfs -o initramfs.cpio [-manifest manifest.json] \
//	  [-meta key=value]... [-hash name=/host/path]... \
//	  /guest/path=/host/path[:octal-mode]...
//
// A file's mode defaults to 0755 when the host file has any execute bit and
// 0644 otherwise. The optional manifest (JSON) lists every file with its size
// and sha256, the archive's own size and sha256, the -meta strings and the
// sha256 of each -hash file (e.g. the kernel, which is not in the archive).
package main
