package runcproc

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

// MakeDir makes dir (0700), the directory of container id that New takes
// as runc's bundle; one that exists already is errdefs.ErrAlreadyExists.
func MakeDir(id, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("container %s: %w", id, errdefs.ErrAlreadyExists)
		}
		return err
	}
	return nil
}
