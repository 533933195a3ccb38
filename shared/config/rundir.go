package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// PodRunDirNameLen is the length of the name PodRunDir gives a pod's
// directory below a sandboxer's run_dir.
const PodRunDirNameLen = 16

// PodRunDir is the run directory of sandbox id below runDir: named by a
// hash of the id, so that the unix sockets inside stay short whatever the
// id (a socket path is at most 107 bytes).
func PodRunDir(runDir, id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(runDir, hex.EncodeToString(sum[:])[:PodRunDirNameLen])
}

// CheckRunDir checks a run_dir key: absolute, and short enough that
// PodRunDir(runDir, id)/socket fits a unix socket path; what names the
// sockets (e.g. "the VMs' unix sockets") for the error.
func CheckRunDir(runDir, socket, what string) error {
	if !filepath.IsAbs(runDir) {
		return fmt.Errorf("run_dir = %q: must be an absolute path", runDir)
	}
	if n := len(runDir) + 1 + PodRunDirNameLen + 1 + len(socket); n > 107 {
		return fmt.Errorf("run_dir = %q: too long for %s (%d > 107 bytes)", runDir, what, n)
	}
	return nil
}
