package mount

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// index is the index of the last mount of ms at dst (-1: none).
func index(ms []specs.Mount, dst string) int {
	at := -1
	for i, m := range ms {
		if m.Destination == dst {
			at = i
		}
	}
	return at
}

// A read-only volume that is not recursively read-only leaves the host
// mounts below its source writable (critest: "should support
// non-recursive readonly mounts" could not write into a tmpfs below it on
// gVisor and in a VM guest).
func TestReadonlySubmounts(t *testing.T) {
	src := t.TempDir()
	table := []Info{
		{Mountpoint: "/"},
		{Mountpoint: src},
		{Mountpoint: src + "/tmpfs"},
		{Mountpoint: src + "/tmpfs/deeper"},
		{Mountpoint: src + "/b"},
		{Mountpoint: src + "/b"}, // stacked
		{Mountpoint: src + "x"},
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/mnt", Type: "bind", Source: src, Options: []string{"rbind", "rslave", "ro"}},
		{Destination: "/mnt/tmpfs/own", Type: "bind", Source: "/x", Options: []string{"rbind", "ro"}},
		{Destination: "/rro", Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "rro"}},
		{Destination: "/rw", Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}},
		{Destination: "/bind", Type: "bind", Source: src, Options: []string{"bind", "ro"}},
		{Destination: "/rel", Type: "bind", Source: "rel", Options: []string{"rbind", "ro"}},
	}
	out, whole := ReadonlySubmounts(ms, table, false)
	if len(whole) != 0 {
		t.Errorf("whole %v", whole)
	}
	if len(out) != len(ms)+2 {
		t.Fatalf("%d mounts, want %d: %+v", len(out), len(ms)+2, out)
	}
	mnt := index(out, "/mnt")
	for i, want := range []specs.Mount{
		{Destination: "/mnt/b", Type: "bind", Source: src + "/b", Options: []string{"rbind", "rslave"}},
		{Destination: "/mnt/tmpfs", Type: "bind", Source: src + "/tmpfs", Options: []string{"rbind", "rslave"}},
	} {
		got := out[mnt+1+i]
		if got.Destination != want.Destination || got.Source != want.Source || !slices.Equal(got.Options, want.Options) {
			t.Errorf("mount %d: %+v, want %+v", mnt+1+i, got, want)
		}
	}
	if i := index(out, "/mnt/tmpfs/own"); i != mnt+3 || out[i].Source != "/x" {
		t.Errorf("the container's own mount below: %d %+v", i, out)
	}

	// flattened: the volume bound non-recursively, as the mounts added bring
	// its submounts
	out, _ = ReadonlySubmounts(ms, table, true)
	if got := out[index(out, "/mnt")].Options; !slices.Equal(got, []string{"bind", "rslave", "ro"}) {
		t.Errorf("flattened volume options %v", got)
	}
	if !slices.Equal(ms[1].Options, []string{"rbind", "rslave", "ro"}) {
		t.Errorf("the caller's mounts changed: %v", ms[1].Options)
	}
	if got := out[index(out, "/rw")].Options; !slices.Equal(got, []string{"rbind", "rprivate"}) {
		t.Errorf("a writable volume flattened: %v", got)
	}

	many := []Info{}
	for i := range MaxSubmounts + 1 {
		many = append(many, Info{Mountpoint: filepath.Join(src, strings.Repeat("d", i+1))})
	}
	ms = []specs.Mount{{Destination: "/mnt", Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}
	if out, whole := ReadonlySubmounts(ms, many, true); !slices.Equal(whole, []string{"/mnt"}) || len(out) != 1 {
		t.Errorf("too many submounts: whole %v, %d mounts", whole, len(out))
	}
}

func TestNonRecursiveReadonly(t *testing.T) {
	for _, c := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Options: []string{"rbind", "ro", "rslave"}}, true},
		{specs.Mount{Type: "bind", Options: []string{"rbind", "ro", "rro"}}, false},
		{specs.Mount{Type: "bind", Options: []string{"bind", "ro"}}, false},
		{specs.Mount{Type: "bind", Options: []string{"rbind"}}, false},
		{specs.Mount{Type: "tmpfs", Options: []string{"ro"}}, false},
	} {
		if got := NonRecursiveReadonly(&c.m); got != c.want {
			t.Errorf("%+v: %v, want %v", c.m, got, c.want)
		}
	}
}
