package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
)

// allowedFlags is every flag an option of flagOpts sets.
func allowedFlags() uintptr {
	var all uintptr
	for _, f := range flagOpts {
		all |= f.flag
	}
	return all
}

// FuzzParseOptions: the flags come only from the known flag options (the
// last of a pair such as ro/rw wins), every other option goes to the data
// string unchanged and in order, and no flag name reaches the data.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"ro", "rw\nro", "ro\nrw", "nosuid\nnodev\nnoexec\nsize=64k", "rbind\nrprivate", "lowerdir=/a:/b\nupperdir=/u\nworkdir=/w",
		"defaults", "", "\n", "mode=755,uid=0", "remount\nbind\nro", "uidmap=0:1000:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opts := strings.Split(s, "\n")
		flags, data := ParseOptions(opts)
		if extra := flags &^ allowedFlags(); extra != 0 {
			t.Fatalf("ParseOptions(%q): flags %#x outside the known options", opts, extra)
		}
		var rest []string
		last := map[uintptr]bool{} // flag -> set by the last option naming it
		for _, o := range opts {
			fo, ok := flagOpts[o]
			if !ok {
				rest = append(rest, o)
				continue
			}
			if fo.flag != 0 {
				for bit := uintptr(1); bit != 0 && bit <= fo.flag; bit <<= 1 {
					if fo.flag&bit != 0 {
						last[bit] = !fo.clear
					}
				}
			}
		}
		if want := strings.Join(rest, ","); data != want {
			t.Fatalf("ParseOptions(%q): data %q, want %q", opts, data, want)
		}
		for bit, set := range last {
			if (flags&bit != 0) != set {
				t.Fatalf("ParseOptions(%q): flag %#x is %v, the last option naming it says %v", opts, bit, flags&bit != 0, set)
			}
		}
	})
}

// FuzzValidate: a mount Validate accepts has a type, a target that stays
// below the root it is joined to, mount data under a page, and no NUL byte
// anywhere (mount(2) takes C strings: one would cut the string short); one
// it refuses gets an error naming the field and its index.
func FuzzValidate(f *testing.F) {
	f.Add("overlay", "overlay", "", "lowerdir=/a\nupperdir=/b\nworkdir=/c")
	f.Add("bind", "/src", "sub/dir", "rbind\nro")
	f.Add("", "x", "", "")
	f.Add("tmpfs", "tmpfs", "../../etc", "")
	f.Add("tmpfs", "tmpfs", "/abs", "")
	f.Add("tmpfs", "tmpfs", "a/./b", strings.Repeat("o", 5000))
	f.Fuzz(func(t *testing.T, typ, src, target, opts string) {
		m := &types.Mount{Type: typ, Source: src, Target: target, Options: strings.Split(opts, "\n")}
		err := Validate("rootfs", []*types.Mount{{Type: "bind", Source: "/ok"}, m})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "rootfs[1]") || !(errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, errdefs.ErrNotImplemented)) {
				t.Fatalf("Validate(%+v) = %v: want an error naming rootfs[1]", m, err)
			}
			return
		}
		const root = "/run/magnetar/rootfs"
		dst := filepath.Join(root, target)
		if typ == "" || (dst != root && !strings.HasPrefix(dst, root+"/")) {
			t.Fatalf("Validate accepted %+v (target joins to %s)", m, dst)
		}
		_, data := ParseOptions(m.Options)
		if len(data) >= os.Getpagesize() {
			t.Fatalf("Validate accepted %d bytes of data", len(data))
		}
		if strings.Contains(typ+src+target+data, "\x00") {
			t.Fatalf("Validate accepted a NUL byte in %+v", m)
		}
	})
}

// mangle escapes a path as the kernel writes it in mountinfo (seq_path's
// " \t\n\\" as \ooo).
func mangle(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if c := p[i]; strings.IndexByte(" \t\n\\", c) >= 0 {
			fmt.Fprintf(&b, `\%03o`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseMountinfo: a mountpoint, whatever bytes a container named it
// with, reads back from the table exactly (RemoveAll unmounts what the
// table lists below a directory before removing it: a misread mountpoint
// is a mount left under a directory being deleted), and so does the
// source; lines around it do not disturb it.
func FuzzParseMountinfo(f *testing.F) {
	f.Add("/run/magnetar/pod/shm", "shm", "garbage line")
	f.Add("/a b/c\td\\e", "/dev/vda1", "1 2 3:4 / /x rw - ext4 /dev/x rw")
	f.Add("/x - y", "-", "")
	f.Add(`/x\040y`, "", "- - -")
	f.Fuzz(func(t *testing.T, mp, src, junk string) {
		if mp == "" || strings.ContainsAny(mp+src, "\x00") || src == "" {
			return // the kernel has no such mountpoint or source
		}
		table := junk + "\n" +
			"36 35 98:0 /mnt1 " + mangle(mp) + " rw,noatime master:1 - ext3 " + mangle(src) + " rw,errors=continue\n" +
			strings.ReplaceAll(junk, "\n", " ") + "\n"
		infos, err := ParseMountinfo(strings.NewReader(table))
		if err != nil {
			return // a junk line over the scanner's limit
		}
		for _, in := range infos {
			if in.Mountpoint == mp && in.FSType == "ext3" && in.Source == src {
				return
			}
		}
		t.Fatalf("mountpoint %q source %q (written %q) not read back from\n%s\ngot %+v", mp, src, mangle(mp), table, infos)
	})
}
