package wasmsb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// shimDelete answers containerd's `wasm-sandboxer ... -id ID -bundle DIR
// delete` after it lost a task connection: the module is gone with the
// connection's daemon; unmount the rootfs we mounted into the bundle.
func shimDelete(ctx context.Context, id, bundle string) (*daemon.ShimExit, error) {
	exit := &daemon.ShimExit{Status: ExitCodeLost, At: time.Now()}
	if bundle == "" || !filepath.IsAbs(bundle) {
		return exit, nil
	}
	data, err := os.ReadFile(filepath.Join(bundle, bundleNote))
	if err != nil {
		return exit, nil // nothing of ours there
	}
	var note struct {
		Rootfs  string `json:"rootfs"`
		Mounted bool   `json:"mounted"`
	}
	if err := json.Unmarshal(data, &note); err != nil {
		return nil, fmt.Errorf("%s: %w", bundleNote, err)
	}
	if note.Mounted && note.Rootfs == filepath.Join(bundle, "rootfs") {
		if err := mount.UnmountAll(note.Rootfs); err != nil {
			return nil, err
		}
	}
	_ = os.Remove(filepath.Join(bundle, bundleNote))
	return exit, nil
}
