package clh

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// The VM integration test boots the real guest image on the Cloud
// Hypervisor stand-in (hack/standins/cloud-hypervisor: the REST API and
// hybrid vsock as published, checked against the OpenAPI document, a QEMU
// TCG guest underneath). It needs root, QEMU, virtiofsd and the guest image
// named by $MAGNETAR_GUEST_IMAGE (make vm-test builds it, sets it and runs
// it); it skips with the reason otherwise.

// StandinEnv names a stand-in binary to use instead of building one.
const StandinEnv = "MAGNETAR_CLH_STANDIN"

var standin struct {
	once sync.Once
	path string
	err  error
}

// standinBinary is the stand-in, built once per test binary (or
// $MAGNETAR_CLH_STANDIN).
func standinBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(StandinEnv); p != "" {
		return p
	}
	standin.once.Do(func() {
		dir, err := os.MkdirTemp("", "clh-standin-bin")
		if err != nil {
			standin.err = err
			return
		}
		standin.path = filepath.Join(dir, "cloud-hypervisor")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goBin, "build", "-o", standin.path, "github.com/magnetar-runtime/magnetar/hack/standins/cloud-hypervisor").CombinedOutput()
		if err != nil {
			standin.err = err
			t.Logf("%s", out)
		}
	})
	if standin.err != nil {
		t.Fatalf("building the stand-in: %v", standin.err)
	}
	return standin.path
}

// TestVMConformance runs the vm.Hypervisor conformance suite on the Cloud
// Hypervisor driver with the stand-in in place of cloud-hypervisor.
func TestVMConformance(t *testing.T) {
	t.Cleanup(func() {
		if standin.path != "" {
			os.RemoveAll(filepath.Dir(standin.path))
		}
	})
	vmtest.Run(t, vmtest.Suite{
		New: func() vm.Hypervisor { return New(Options{}) },
		Configure: func(t *testing.T, cfg *vm.Config) {
			if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
				t.Skipf("no QEMU for the stand-in: %v (apt-get install qemu-system-x86)", err)
			}
			if _, err := os.Stat(virtiofsd.DefaultBinary); err != nil {
				t.Skipf("no virtiofsd: %v (qemu-system-common 7.2)", err)
			}
			cfg.Binary = standinBinary(t)
			cfg.Helpers = map[string]string{vm.HelperVirtiofsd: virtiofsd.DefaultBinary}
			cfg.Agent, cfg.Accel = vm.AgentChannel{Kind: vm.ChannelHybridVsock}, AccelKVM
			// the VMM's command line names its run directory, not the id
			t.Cleanup(func() {
				for _, p := range proc.Find(proc.Naming(cfg.Dir + "/")) {
					t.Errorf("killing leftover process %d: %s", p.PID, p.Line())
					syscall.Kill(p.PID, syscall.SIGKILL)
				}
			})
		},
		RunFiles: []string{APISocket, VsockSocket, VirtiofsSocket},
		Helpers:  1,
		Leftovers: func(cfg *vm.Config) []string {
			var out []string
			for _, p := range proc.Find(proc.Naming(cfg.Dir + "/")) {
				out = append(out, "process "+p.Line())
			}
			sock := filepath.Join(cfg.Dir, VirtiofsSocket)
			for _, f := range []string{virtiofsd.LockFile(sock), virtiofsd.RustLockFile(sock)} {
				if _, err := os.Lstat(f); err == nil {
					out = append(out, "virtiofsd lock file "+f)
				}
			}
			return out
		},
	})
}
