package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// removeTree removes the cgroup directory dir after its child cgroups,
// deepest first. Cgroup directories are removed with rmdir alone: the
// kernel drops their control files, and refuses (EBUSY) while a process is
// inside.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return rmdir(dir)
}

// rmdir removes one cgroup directory, retrying for a short while on EBUSY:
// a cgroup stays busy for a moment after its last process has exited.
func rmdir(dir string) error {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && attempt < 6 && !hasProcs(dir):
			time.Sleep(delay)
			delay *= 2
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("remove %s: cgroup still has processes or children: %w", dir, errdefs.ErrFailedPrecondition)
		default:
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
}

// hasProcs reports whether processes are still attached to the cgroup dir,
// in which case waiting for rmdir is pointless.
func hasProcs(dir string) bool {
	procs, err := readControl(filepath.Join(dir, "cgroup.procs"))
	return err == nil && procs != ""
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// writeControl writes value to an existing control file. It never creates
// the file, so a missing controller shows up as fs.ErrNotExist.
func writeControl(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readControl returns the trimmed content of a control file.
func readControl(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readKV reads a "key value" per line control file (memory.events,
// memory.oom_control, ...) and returns the value of key.
func readKV(file, key string) (uint64, bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("parse %s in %s: %w", key, file, err)
		}
		return n, true, nil
	}
	return 0, false, nil
}

// notSupported reports whether a write failed because the kernel does not
// offer the setting (as opposed to refusing the value).
func notSupported(err error) bool {
	const enotsupp = unix.Errno(524) // kernel-internal ENOTSUPP, leaked by some control files
	return errors.Is(err, fs.ErrNotExist) ||
		errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, enotsupp)
}
