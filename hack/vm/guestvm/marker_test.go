package guestvm

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeMarkerEnv makes the test binary a stand-in for QEMU booting the marker
// image: "ok" prints both marker lines, "no-modules" only the first and
// exits 1.
const fakeMarkerEnv = "GUESTVM_TEST_FAKE_MARKER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeMarkerEnv); mode != "" {
		os.Exit(fakeMarkerQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeMarkerQEMU greets on the -qmp socket and prints the marker's lines on
// its console (stdout).
func fakeMarkerQEMU(mode string, args []string) int {
	var qmp string
	for i, a := range args {
		if a == "-qmp" && i+1 < len(args) {
			qmp, _, _ = strings.Cut(strings.TrimPrefix(args[i+1], "unix:"), ",")
		}
	}
	l, err := net.Listen("unix", qmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 2
	}
	greeted := make(chan struct{})
	go func() {
		defer close(greeted)
		if c, err := l.Accept(); err == nil {
			fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
			c.Close()
		}
	}()
	fmt.Println("Linux booting")
	time.Sleep(20 * time.Millisecond)
	fmt.Println("MAGNETAR-MARKER init boottime_us=1500000")
	time.Sleep(20 * time.Millisecond)
	code := 1
	if mode == "ok" {
		fmt.Println("MAGNETAR-MARKER modules n=3 ms=420 boottime_us=1930000")
		code = 0
	}
	select {
	case <-greeted:
	case <-time.After(10 * time.Second):
	}
	time.Sleep(20 * time.Millisecond)
	return code
}

// TestBootMarker drives BootMarker with the test binary as QEMU.
func TestBootMarker(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Kernel: "/k", Initrd: "/initramfs-marker.cpio", QEMU: exe, Accel: "tcg"}

	t.Setenv(fakeMarkerEnv, "ok")
	b, err := BootMarker(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.Accel != "tcg" || b.GuestInitMS != 1500 || b.ModulesMS != 420 {
		t.Errorf("boot %+v", b)
	}
	// QEMU's greeting and the marker's first line race; the rest is in order
	if b.Started.IsZero() || b.QMP.Before(b.Started) || b.Init.Before(b.Started) ||
		!b.Modules.After(b.Init) || b.Exited.Before(b.Modules) {
		t.Errorf("steps out of order: %+v", b)
	}

	t.Setenv(fakeMarkerEnv, "no-modules")
	b, err = BootMarker(ctx, cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "marker modules: ") || !strings.Contains(err.Error(), "MAGNETAR-MARKER init") {
		t.Errorf("no modules line: %v", err)
	}
	if b.Init.IsZero() || !b.Modules.IsZero() || b.GuestInitMS != 1500 || b.ModulesMS != -1 {
		t.Errorf("partial boot %+v", b)
	}
}

func TestMatchFloat(t *testing.T) {
	if v := matchFloat(reModMS, "MAGNETAR-MARKER modules n=20 ms=812 boottime_us=3"); v != 812 {
		t.Errorf("ms %v", v)
	}
	if v := matchFloat(reBoottime, "MAGNETAR-MARKER init"); v != -1 {
		t.Errorf("absent %v", v)
	}
}
