package vmtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
)

// ArgsFuzz is a driver's command-line fuzz target: whatever a VM config
// holds (id, run directory, kernel, initrd, share, MAC, MTU, agent
// channel), either the driver refuses it with an invalid-argument error
// naming the VMM and the VM, or every option list of its command line
// splits, as the VMM splits it, into the keys the driver means: a path
// value is exactly one of the driver's files in the run directory, the
// guest name, MAC and share tag are the config's, no key twice, and no
// argument holds a NUL byte (exec would refuse it). A comma or '=' in a
// path thus cannot add an option.
type ArgsFuzz struct {
	// VMM is the driver's name, as its errors start ("qemu").
	VMM string
	// Args is the driver's command line for cfg.
	Args func(cfg *vm.Config) ([]string, error)
	// OptionLists are the flags whose value is an option list.
	OptionLists map[string]bool
	// Split splits an option list into its "key=value" (or bare) elements
	// as the VMM does.
	Split func(list string) []string
	// SplitsAtEquals: the VMM splits an element at every '=' (no value
	// may hold one).
	SplitsAtEquals bool
	// Files are the names the driver puts in the run directory.
	Files []string
}

// SplitQemuOpts splits as QEMU's QemuOpts: "," separates, ",," is a comma.
func SplitQemuOpts(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == ',' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// Fuzz runs the target.
func (a ArgsFuzz) Fuzz(f *testing.F) {
	f.Helper()
	f.Add("0123abcd", "/run/magnetar-vmm/0123abcd", "/var/lib/magnetar/vmlinuz", "/i", "/share", "02:42:ac:11:00:02", 1450, true)
	f.Add("a,b", "/run/m,x/a", "/k,1", "/i", "", "02:00:00:00:00:01", 0, false)
	f.Add("x", "/run/a,id=evil,path=/etc", "/k", "/i", "/s,x", "02:00:00:00:00:01,id=y", -1, true)
	f.Add("x", "relative", "", "/i", "rel", "zz", 0, true)
	f.Add("x", "/r", "/k\x00", "/i", "/s", "02:00:00:00:00:01", 9000, false)
	f.Add("x", "/r=1", "/k", "/i", "/s=x", "0200.0000.0001", 0, false)
	tap := os.NewFile(0, "tap") // never used by Args, only counted
	f.Fuzz(func(t *testing.T, id, dir, kernel, initrd, share, mac string, mtu int, serial bool) {
		cfg := &vm.Config{ID: id, Dir: dir, Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 256, Share: share,
			Agent: vm.AgentChannel{Kind: vm.ChannelVsock}, NICs: []vm.NIC{{Tap: tap, TapName: "tap0", MAC: mac, MTU: mtu}}}
		if serial {
			cfg.Agent.Kind = vm.ChannelSerial
		}
		args, err := a.Args(cfg)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), a.VMM+" vm ") {
				t.Fatalf("Args(%+v) = %v: want an invalid-argument error naming the VM", cfg, err)
			}
			return
		}
		files := map[string]bool{}
		for _, p := range a.Files {
			files[filepath.Join(dir, p)] = true
		}
		for i, arg := range args {
			if strings.IndexByte(arg, 0) >= 0 {
				t.Fatalf("Args(%+v): argument %q has a NUL byte", cfg, arg)
			}
			if i == 0 || !a.OptionLists[args[i-1]] {
				continue
			}
			opts := a.Split(arg)
			if p, ok := strings.CutPrefix(opts[0], "unix:"); ok { // -qmp's socket
				opts[0] = "path=" + p
			}
			seen := map[string]bool{}
			for j, o := range opts {
				k, v, hasValue := strings.Cut(o, "=")
				if j == 0 && !hasValue {
					continue // the type: the list's implied first key
				}
				if seen[k] || a.SplitsAtEquals && strings.Contains(v, "=") {
					t.Fatalf("Args(%+v): %s %q splits to %q: element %q", cfg, args[i-1], arg, opts, o)
				}
				seen[k] = true
				bad := false
				switch k {
				case "path":
					bad = !files[v]
				case "guest":
					bad = v != id
				case "mac":
					bad = v != mac
				case "tag":
					bad = v != cfg.VirtiofsTag()
				}
				if bad {
					t.Fatalf("Args(%+v): %s %q splits to %q: %s=%q", cfg, args[i-1], arg, opts, k, v)
				}
			}
		}
	})
}
