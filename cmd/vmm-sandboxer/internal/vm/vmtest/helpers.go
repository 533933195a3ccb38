package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// Helpers for the drivers' own tests (their fake VMMs) and the suite.

// Ctx is a context that ends after d or with the test.
func Ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitDone fails the test unless v is Done within d.
func WaitDone(t *testing.T, v vm.VM, d time.Duration) {
	t.Helper()
	select {
	case <-v.Done():
	case <-time.After(d):
		t.Fatalf("VM not done %s after it should have ended", d)
	}
}

// ShortDir is a fresh temporary directory short enough for unix sockets,
// removed with the test.
func ShortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// FakeGuest writes a kernel and an initrd into dir that pass
// vm.CheckGuest (a bzImage header, a cpio magic) for a fake VMM.
func FakeGuest(t *testing.T, dir string) (kernel, initrd string) {
	t.Helper()
	k := make([]byte, 0x400)
	copy(k[0x202:], "HdrS")
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	if err := os.WriteFile(kernel, k, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, []byte("070701"), 0o644); err != nil {
		t.Fatal(err)
	}
	return kernel, initrd
}

// ProcsNaming lists the live processes with an argument containing s.
func ProcsNaming(s string) []int {
	var pids []int
	for _, p := range proc.Find(proc.Naming(s)) {
		pids = append(pids, p.PID)
	}
	return pids
}

// FakeConfig is a VM for a driver's fake VMM (the test binary itself, run
// again as the VMM): a fresh short directory with a FakeGuest, one vCPU,
// 128 MiB, the serial agent channel and no share.
func FakeConfig(t *testing.T) *vm.Config {
	t.Helper()
	dir := ShortDir(t)
	kernel, initrd := FakeGuest(t, dir)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &vm.Config{ID: "fake" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: filepath.Join(dir, "vm"), Kernel: kernel, Initrd: initrd,
		VCPUs: 1, MemoryMiB: 128, Agent: vm.AgentChannel{Kind: vm.ChannelSerial}, Binary: self}
}

// AssertGone fails the test for every process with an argument containing
// naming, and every one of files left in cfg.Dir.
func AssertGone(t *testing.T, cfg *vm.Config, naming string, files ...string) {
	t.Helper()
	if p := ProcsNaming(naming); len(p) > 0 {
		t.Errorf("processes naming %s left: %v", naming, p)
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(cfg.Dir, f)); err == nil {
			t.Errorf("%s left in the run directory", f)
		}
	}
}

// standins are the stand-in binaries BuildStandin built, by package.
var standins = struct {
	sync.Mutex
	path map[string]string
}{path: map[string]string{}}

// BuildStandin is the stand-in of a VMM (a main package under
// hack/standins, e.g. ".../hack/standins/stratovirt") as a binary named
// name, built once per test binary into a temporary directory, or the
// binary $env names. Drivers' VM tests put it in place of the real VMM.
// The directory stays until the test binary exits (use RemoveStandins in
// TestMain, or leave it to the system's temporary directory).
func BuildStandin(t *testing.T, env, pkg, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	standins.Lock()
	defer standins.Unlock()
	if p, ok := standins.path[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "standin")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", p, pkg).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("building the stand-in %s: %v\n%s", pkg, err, out)
	}
	standins.path[pkg] = p
	return p
}

// RemoveStandins removes what BuildStandin built.
func RemoveStandins() {
	standins.Lock()
	defer standins.Unlock()
	for pkg, p := range standins.path {
		os.RemoveAll(filepath.Dir(p))
		delete(standins.path, pkg)
	}
}

// Golden compares got with the golden file (testdata/NAME.golden of a
// driver's argv or requests); with update it first writes got there.
func Golden(t *testing.T, file string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if string(got) != string(want) {
		t.Errorf("differs from %s (go test -update after checking):\n--- got\n%s--- want\n%s", file, got, want)
	}
}
