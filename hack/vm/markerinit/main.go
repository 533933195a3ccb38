package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// loadOrder is the initramfs's dependency-ordered module list.
const loadOrder = "/modules/load"

func boottimeUS() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return -1
	}
	return ts.Nano() / 1000
}

func main() {
	fmt.Printf("MAGNETAR-MARKER init boottime_us=%d\n", boottimeUS())
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Printf("markerinit: mount %s: %v\n", m.dst, err)
		}
	}
	t0 := time.Now()
	n, err := loadModules()
	if err != nil {
		fmt.Printf("markerinit: modules: %v\n", err)
	}
	fmt.Printf("MAGNETAR-MARKER modules n=%d ms=%d boottime_us=%d\n", n, time.Since(t0).Milliseconds(), boottimeUS())
	if b, _ := os.ReadFile("/proc/cmdline"); strings.Contains(" "+string(b)+" ", " markerinit.hold ") {
		for {
			time.Sleep(time.Hour)
		}
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("markerinit: poweroff: %v\n", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

func loadModules() (int, error) {
	f, err := os.Open(loadOrder)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if err := loadModule(filepath.Join("/modules", name)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		n++
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
