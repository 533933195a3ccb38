package mount

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// MaxSubmounts bounds the host mounts below one read-only volume that
// ReadonlySubmounts mounts again: a volume with more (the host's / say)
// stays read-only as a whole.
const MaxSubmounts = 32

// NonRecursiveReadonly tells a bind mount that is read-only but not
// recursively so: "ro" with "rbind" and no "rro" (CRI's readonly without
// recursive_read_only), which Linux (runc) makes read-only at its own mount
// only, leaving the mounts below its source as they are.
func NonRecursiveReadonly(m *specs.Mount) bool {
	return IsBind(m) && slices.Contains(m.Options, "rbind") && slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rro")
}

// ReadonlySubmounts keeps the host mounts below each non-recursively
// read-only volume of ms writable where a runtime would make them read-only
// with the volume: one that serves the volume as a single mount (gVisor's
// sentry), or whose own read-only bind is inherited by the mounts below it
// (a VM guest's automounted virtio-fs submounts). Each outermost host mount
// below the volume's source (from table, the host's mount table) is added as
// a bind mount of its own right after the volume, with the volume's
// propagation; the host still enforces its own flags (a read-only submount
// stays read-only). With flatten, a volume given such mounts is bound
// non-recursively ("bind" for "rbind"): its submounts come with the mounts
// added, and a recursive copy made in the caller's mount namespace would
// keep each submount's mountpoint busy on the host (whoever mounted it
// could unmount it but never remove the directory: EBUSY). It returns the
// mounts and the destinations of the volumes left read-only as a whole
// because they hold more than MaxSubmounts mounts.
func ReadonlySubmounts(ms []specs.Mount, table []Info, flatten bool) (out []specs.Mount, whole []string) {
	for _, m := range ms {
		out = append(out, m)
		if !NonRecursiveReadonly(&m) || !filepath.IsAbs(m.Source) {
			continue
		}
		src, err := filepath.EvalSymlinks(m.Source)
		if err != nil {
			continue // the runtime's to report
		}
		subs := outermostBelow(table, src)
		if len(subs) > MaxSubmounts {
			whole = append(whole, m.Destination)
			continue
		}
		if flatten && len(subs) > 0 {
			v := &out[len(out)-1]
			v.Options = slices.Clone(v.Options)
			v.Options[slices.Index(v.Options, "rbind")] = "bind"
		}
		for _, sub := range subs {
			rel, err := filepath.Rel(src, sub)
			if err != nil {
				continue
			}
			out = append(out, specs.Mount{
				Destination: filepath.Join(m.Destination, rel),
				Type:        "bind",
				Source:      sub,
				Options:     append([]string{"rbind"}, Propagation(m.Options)...),
			})
		}
	}
	return out, whole
}

// Propagation is the propagation options of a mount.
func Propagation(opts []string) []string {
	var out []string
	for _, o := range opts {
		switch o {
		case "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
			out = append(out, o)
		}
	}
	return out
}

// outermostBelow lists the mountpoints of table strictly below dir that
// are not below another of them, sorted.
func outermostBelow(table []Info, dir string) []string {
	dir = filepath.Clean(dir)
	below := Below(table, dir)
	sort.Strings(below)
	below = slices.Compact(below)
	var out []string
	for _, mp := range below {
		if mp == dir || len(out) > 0 && strings.HasPrefix(mp, out[len(out)-1]+"/") {
			continue
		}
		out = append(out, mp)
	}
	return out
}
