package tasktest

import (
	"os"
	"os/exec"
	"path/filepath"
)

// FindRunc is the real runc the integration tests run: MAGNETAR_RUNC,
// else the project's (_output/prefix/bin/runc below checkout, the path of
// the checkout's root relative to the test's package), else PATH's; ""
// if there is none.
func FindRunc(checkout string) string {
	if p := os.Getenv("MAGNETAR_RUNC"); p != "" {
		return p
	}
	if p, err := filepath.Abs(filepath.Join(checkout, "_output/prefix/bin/runc")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath("runc")
	return p
}
