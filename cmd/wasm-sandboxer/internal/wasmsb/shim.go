package wasmsb

import (
	"context"
	"path/filepath"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// shimDelete answers containerd's `wasm-sandboxer ... -id ID -bundle DIR
// delete` after it lost a task connection: the module is gone with the
// connection's daemon; unmount the rootfs we mounted into the bundle.
func shimDelete(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
	exit := &daemon.ShimExit{Status: ExitCodeLost, At: time.Now()}
	var note struct {
		Rootfs  string `json:"rootfs"`
		Mounted bool   `json:"mounted"`
	}
	if ok, err := bundle.ReadNote(bundleDir, bundleNote, &note); !ok {
		return exit, err
	}
	if note.Mounted && note.Rootfs == filepath.Join(bundleDir, "rootfs") {
		if err := mount.UnmountAll(note.Rootfs); err != nil {
			return nil, err
		}
	}
	bundle.RemoveNotes(bundleDir, bundleNote)
	return exit, nil
}
