package runcbe

import (
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

const fuzzShare = "/run/magnetar/share"

// inside reports whether p, once cleaned, is the share or below it.
func inside(p string) bool {
	c := filepath.Clean(p)
	return c == fuzzShare || strings.HasPrefix(c, fuzzShare+"/")
}

// FuzzWithin: a path within accepts lies in the share however the kernel
// resolves its "..": "/share/a/../../etc" is not in the share.
func FuzzWithin(f *testing.F) {
	for _, p := range []string{fuzzShare, fuzzShare + "/c1", fuzzShare + "/../etc", fuzzShare + "/c1/../../../etc", fuzzShare + "x", fuzzShare + "//c", "/", "c1", fuzzShare + "/."} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if within(fuzzShare, p) && (!inside(p) || !filepath.IsAbs(p)) {
			t.Fatalf("within(%q, %q) but it resolves to %s", fuzzShare, p, filepath.Clean(p))
		}
		if inside(p) && filepath.Clean(p) == p && !within(fuzzShare, p) {
			t.Fatalf("within(%q, %q) refused a clean path in the share", fuzzShare, p)
		}
	})
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

var containerNS = regexp.MustCompile(`^/proc/([0-9]+)/ns/[a-z]+$`)

// FuzzRewriteSpec: the spec the agent gives runc binds nothing from outside
// the share (but /dev/shm), joins no namespace path but a container's or
// the pod's PID namespace, keeps no hooks and runs in the agent's cgroup;
// a spec it cannot so rewrite is refused naming the field.
func FuzzRewriteSpec(f *testing.F) {
	f.Add("bind", fuzzShare+"/c1/vol", "rbind\nro", "pid", "/proc/42/ns/pid")
	f.Add("none", fuzzShare+"/../../etc", "rbind", "network", "/var/run/netns/x")
	f.Add("tmpfs", "tmpfs", "size=1m", "mount", "/proc/1/ns/mnt")
	f.Add("bind", "/dev/shm", "bind", "ipc", "")
	f.Add("bind", "relative", "", "user", "/proc/7/ns/user")
	f.Fuzz(func(t *testing.T, typ, src, opts, nsType, nsPath string) {
		sp := &specs.Spec{
			Process: &specs.Process{ApparmorProfile: "x", SelinuxLabel: "y"},
			Hooks:   &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/evil"}}},
			Mounts:  []specs.Mount{{Destination: "/data", Type: typ, Source: src, Options: strings.Split(opts, "\n")}},
			Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.LinuxNamespaceType(nsType), Path: nsPath}}, CgroupsPath: "/host/cgroup"},
		}
		isCtr := func(pid int) bool { return pid == 42 }
		const podNS = "/proc/99/ns/pid"
		err := RewriteSpec(sp, "c1", fuzzShare, isCtr, func() (string, error) { return podNS, nil })
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !(strings.HasPrefix(err.Error(), "mounts[0]") || strings.HasPrefix(err.Error(), "linux.namespaces")) {
				t.Fatalf("RewriteSpec = %v: want an invalid-argument error naming the field", err)
			}
			return
		}
		if sp.Hooks != nil || sp.Linux.CgroupsPath != "/magnetar/c1" || sp.Process.ApparmorProfile != "" || sp.Process.SelinuxLabel != "" {
			t.Fatalf("RewriteSpec kept host settings: %+v %+v", sp.Hooks, sp.Linux)
		}
		for _, m := range sp.Mounts {
			bind := m.Type == "bind" || strings.Contains("\n"+opts+"\n", "\nbind\n") || strings.Contains("\n"+opts+"\n", "\nrbind\n")
			if bind && !inside(m.Source) && m.Source != "/dev/shm" {
				t.Fatalf("RewriteSpec let a bind of %q (%s) through", m.Source, filepath.Clean(m.Source))
			}
		}
		for _, ns := range sp.Linux.Namespaces {
			if ns.Path == "" || ns.Path == podNS {
				continue
			}
			if m := containerNS.FindStringSubmatch(ns.Path); m == nil || !isCtr(atoi(m[1])) {
				t.Fatalf("RewriteSpec kept namespace %+v", ns)
			}
		}
	})
}
