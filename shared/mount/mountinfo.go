package mount

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Info is one line of a mountinfo table (proc_pid_mountinfo(5)).
type Info struct {
	// Mountpoint is where the mount is, unescaped.
	Mountpoint string
	// FSType and Source are the fields after the " - " separator.
	FSType, Source string
}

// ParseMountinfo reads a mountinfo table.
func ParseMountinfo(r io.Reader) ([]Info, error) {
	var out []Info
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		//
		// Fields are separated by one space; the paths escape space, tab,
		// newline and backslash (\ooo), so a path is one field whatever
		// else it holds (\v, \r, U+0085, U+00A0, at which strings.Fields
		// would split it; a "-", which strings.Cut(" - ") would take for
		// the separator). The separator is the first "-" after opts.
		f := strings.Split(sc.Text(), " ")
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		if sep+1 >= len(f) || f[sep+1] == "" {
			continue
		}
		in := Info{Mountpoint: unescape(f[4]), FSType: f[sep+1]}
		if sep+2 < len(f) {
			in.Source = unescape(f[sep+2])
		}
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// Self is this process's mount table (/proc/self/mountinfo).
func Self() ([]Info, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// unescape undoes the octal escapes (\040 for space, ...) of a mountinfo
// path field.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Below lists the mountpoints of table at dir or below it, deepest first.
func Below(table []Info, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range table {
		if dir == "/" || m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// RemoveAll unmounts everything mounted at dir or below it (deepest first,
// lazily, stacked mounts too), then removes dir and what it holds. It is the
// safety net for directories that may hold mounts (a sandbox's namespace
// files, a pod's /dev/shm, a container's rootfs): os.RemoveAll alone would
// descend into a mounted file system and empty it. A missing dir is fine.
func RemoveAll(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	table, err := Self()
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range Below(table, dir) {
		if err := UnmountAll(mp); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// a mount that appeared meanwhile: check once more before removing
	if table, err = Self(); err == nil {
		if left := Below(table, dir); len(left) > 0 {
			return fmt.Errorf("remove %s: still mounted below it: %s", dir, strings.Join(left, ", "))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
