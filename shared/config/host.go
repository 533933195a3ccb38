package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// HostChecker is a configuration whose keys name things on the host that
// must be usable before the daemon serves: binaries it runs, files it
// reads. The daemon calls CheckHost at start-up, after Validate, and does
// not start when it fails, rather than fail every pod later. It is not part
// of Validate, which checks values only (its tests need no runc
// installed). CheckHost may replace a value by what it resolved to, such as
// a binary's absolute path.
type HostChecker interface {
	CheckHost() error
}

// Executable checks that the value of key names an executable and returns
// its absolute path. A bare name ("runc") is looked up in the absolute
// directories of PATH, in order (a relative one, such as "" or ".", would
// depend on the daemon's working directory and is skipped); anything else
// must be an absolute path. The error names the key and its value, every
// directory searched and, for a file that is there but unusable, why:
// missing, not a regular file, not executable.
func Executable(key, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("%s: must not be empty", key)
	}
	if strings.Contains(value, "/") {
		if !filepath.IsAbs(value) {
			return "", fmt.Errorf("%s = %q: want a name looked up in PATH or an absolute path", key, value)
		}
		if why, _ := unusable(value, true); why != "" {
			return "", fmt.Errorf("%s = %q: %s", key, value, why)
		}
		return filepath.Clean(value), nil
	}
	env := os.Getenv("PATH")
	var searched, unusables []string
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(env) {
		if !filepath.IsAbs(dir) || seen[dir] {
			continue
		}
		seen[dir] = true
		searched = append(searched, dir)
		p := filepath.Join(dir, value)
		why, missing := unusable(p, true)
		if why == "" {
			return p, nil
		}
		if !missing {
			unusables = append(unusables, why)
		}
	}
	if len(searched) == 0 {
		return "", fmt.Errorf("%s = %q: not found: PATH (%q) has no absolute directory to search; give an absolute path", key, value, env)
	}
	msg := fmt.Sprintf("%s = %q: not found in PATH (searched %s)", key, value, strings.Join(searched, ", "))
	for _, u := range unusables {
		msg += "; " + u
	}
	return "", errors.New(msg + "; install it or give its absolute path")
}

// ExistingFile checks that the value of key is the absolute path of an
// existing regular file (after symbolic links). The error names the key, its
// value and why the file is unusable.
func ExistingFile(key, value string) error {
	if !filepath.IsAbs(value) {
		return fmt.Errorf("%s = %q: must be an absolute path", key, value)
	}
	if why, _ := unusable(value, false); why != "" {
		return fmt.Errorf("%s = %q: %s", key, value, why)
	}
	return nil
}

// unusable says why path is not a regular file that this process can use
// (executable too when exe): "" when it is. missing reports that nothing is
// there, which a PATH search does not mention.
func unusable(path string, exe bool) (why string, missing bool) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if target, lerr := os.Readlink(path); lerr == nil {
			return fmt.Sprintf("%s is a symbolic link to %s, which does not exist", path, target), false
		}
		return path + " does not exist", true
	case err != nil:
		return err.Error(), false // stat /x/runc: permission denied
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is %s, not a regular file", path, kind(fi.Mode())), false
	case !exe:
		return "", false
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Sprintf("%s is not executable (mode %s)", path, fi.Mode().Perm()), false
	}
	// execute bits for others only, or a noexec mount
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Sprintf("%s cannot be executed by this user (mode %s): %v", path, fi.Mode().Perm(), err), false
	}
	return "", false
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}
