package nsutil

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestRefusals(t *testing.T) {
	if _, err := Create(context.Background(), t.TempDir(), []Kind{"net"}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Create(net) = %v", err)
	}
	bad := []map[string]string{
		{"vm.swappiness": "1"},
		{"net..x": "1"},
		{"net.ipv4/../../x": "1"},
		{"net.ipv4.ip_forward": "1\n2"},
		{"kernel.shmmax": "1"}, // no ipc path given
	}
	for _, s := range bad {
		err := ApplySysctls("/nonexistent", "", s)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ApplySysctls(%v) = %v, want InvalidArgument", s, err)
		}
		for k := range s {
			if err != nil && !strings.Contains(err.Error(), k) {
				t.Errorf("error %q does not name %q", err, k)
			}
		}
	}
	if err := ApplySysctls("", "", map[string]string{"net.core.somaxconn": "1"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("net sysctl without netns: %v", err)
	}
}

func TestHoldRelease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create namespaces")
	}
	dir := filepath.Join(t.TempDir(), "ns")
	held, err := Create(context.Background(), dir, []Kind{"ipc", "uts"}, "magnetar-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{"ipc", "uts"} {
		if ok, err := IsNSFile(held[k], k); !ok || err != nil {
			t.Fatalf("%s not held: %v %v", k, ok, err)
		}
	}
	if ok, _ := IsNSFile(held["ipc"], "uts"); ok {
		t.Error("IsNSFile kind check")
	}
	var name string
	if err := Do(held["uts"], "uts", func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		name = unix.ByteSliceToString(u.Nodename[:])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if name != "magnetar-test" || host == name {
		t.Errorf("hostname in ns %q, host %q", name, host)
	}
	before, _ := os.ReadFile("/proc/sys/kernel/shmmni")
	if err := ApplySysctls("", held["ipc"], map[string]string{"kernel.shmmni": "1234"}); err != nil {
		t.Fatal(err)
	}
	var inside []byte
	Do(held["ipc"], "ipc", func() error {
		inside, err = os.ReadFile("/proc/sys/kernel/shmmni")
		return err
	})
	after, _ := os.ReadFile("/proc/sys/kernel/shmmni")
	if strings.TrimSpace(string(inside)) != "1234" || string(before) != string(after) {
		t.Errorf("sysctl inside %q, host before %q after %q", inside, before, after)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if err := Release(dir); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Error("mount left behind")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("dir left behind")
	}
}

func TestCreateRollback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create namespaces")
	}
	dir := filepath.Join(t.TempDir(), "ns")
	// an invalid hostname makes sethostname fail after the files exist
	if _, err := Create(context.Background(), dir, []Kind{"uts", "ipc"}, strings.Repeat("h", 100)); err == nil {
		t.Fatal("want error")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("rollback left %s", dir)
	}
}
