package stratovirt

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// The VM integration test boots the real guest image on the StratoVirt
// stand-in (hack/standins/stratovirt: the guidebook's command line and
// qmp.md's QMP, a QEMU TCG microvm underneath). It needs root, QEMU,
// virtiofsd and the guest image named by $MAGNETAR_GUEST_IMAGE (make
// vm-test builds it, sets it and runs it); it skips with the reason
// otherwise.

// StandinEnv names a stand-in binary to use instead of building one.
const StandinEnv = "MAGNETAR_STRATOVIRT_STANDIN"

const standinPkg = "github.com/magnetar-runtime/magnetar/hack/standins/stratovirt"

// TestVMConformance runs the vm.Hypervisor conformance suite on the
// StratoVirt driver with the stand-in in place of stratovirt.
func TestVMConformance(t *testing.T) {
	vmtest.Run(t, vmtest.Suite{
		New: func() vm.Hypervisor { return New(Options{}) },
		Configure: func(t *testing.T, cfg *vm.Config) {
			if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
				t.Skipf("no QEMU for the stand-in: %v (apt-get install qemu-system-x86)", err)
			}
			if _, err := os.Stat(virtiofsd.DefaultBinary); err != nil {
				t.Skipf("no virtiofsd: %v (qemu-system-common 7.2)", err)
			}
			cfg.Binary = vmtest.BuildStandin(t, StandinEnv, standinPkg, DefaultBinary)
			cfg.Helpers = map[string]string{vm.HelperVirtiofsd: virtiofsd.DefaultBinary}
			// no vhost-vsock here: the virtio console port
			cfg.Agent, cfg.Accel = vm.AgentChannel{Kind: vm.ChannelSerial}, AccelKVM
			// StratoVirt's command line names its run directory, not the id
			t.Cleanup(func() {
				for _, p := range proc.Find(proc.Naming(cfg.Dir + "/")) {
					t.Errorf("killing leftover process %d: %s", p.PID, p.Line())
					_ = syscall.Kill(p.PID, syscall.SIGKILL)
				}
			})
		},
		RunFiles: []string{QMPSocket, AgentSocket, VirtiofsSocket, PidFile},
		Helpers:  1,
		Leftovers: func(cfg *vm.Config) []string {
			var out []string
			for _, p := range proc.Find(proc.Naming(cfg.Dir + "/")) {
				out = append(out, "process "+p.Line())
			}
			if _, err := os.Lstat(virtiofsd.LockFile(filepath.Join(cfg.Dir, VirtiofsSocket))); err == nil {
				out = append(out, "virtiofsd lock file")
			}
			return out
		},
	})
}
