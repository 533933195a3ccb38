package vmtest

import (
	"os"
	"testing"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
)

// makeBundle writes share/<id>/{config.json,rootfs/} for a busybox container
// running args (guestvm.BusyboxBundle) and returns the bundle's path inside
// the guest. The container shares the VM's uts and network namespaces, so
// Setup's hostname and sysctls are what it sees; seccomp denies mkdir(2) and
// mkdirat(2) with EPERM, to show that the guest's runc enforces a profile.
func makeBundle(t *testing.T, share, id string, args []string) string {
	t.Helper()
	if _, err := os.Stat(guestvm.Busybox); err != nil {
		t.Skipf("no %s (apt-get install busybox-static): %v", guestvm.Busybox, err)
	}
	if err := guestvm.BusyboxBundle(share, id, args, []string{"mkdir", "mkdirat"}); err != nil {
		t.Fatal(err)
	}
	return guestShare + "/" + id
}
