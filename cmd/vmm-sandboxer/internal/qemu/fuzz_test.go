package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
)

// qemuOpts splits an option list as QEMU's QemuOpts does: "," separates,
// ",," is a comma; the first element may be a bare value (implied key).
func qemuOpts(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	return append(out, cur.String())
}

// optionLists are the QEMU flags whose value is an option list.
var optionLists = map[string]bool{"-name": true, "-machine": true, "-object": true, "-chardev": true, "-device": true, "-netdev": true, "-qmp": true}

// FuzzArgs: a VM config vm.Config.Check and the driver accept becomes a
// QEMU command line in which every option list parses (as QEMU parses it)
// to the keys Args means, each path value exactly the path meant (a comma
// or '=' in a directory cannot add an option), and no argument holds a NUL
// (exec would refuse it); one they refuse gets an invalid-argument error
// naming the VM.
func FuzzArgs(f *testing.F) {
	f.Add("0123abcd", "/run/magnetar-vmm/0123abcd", "/var/lib/magnetar/vmlinuz", "/i", "/share", "02:42:ac:11:00:02", 1450, true)
	f.Add("a,b", "/run/m,x/a", "/k,1", "/i", "", "02:00:00:00:00:01", 0, false)
	f.Add("x", "/run/a,id=evil,path=/etc", "/k", "/i", "/s,x", "02:00:00:00:00:01,id=y", -1, true)
	f.Add("x", "relative", "", "/i", "rel", "zz", 0, true)
	f.Add("x", "/r", "/k\x00", "/i", "/s", "02:00:00:00:00:01", 9000, false)
	tap := os.NewFile(0, "tap") // never used by Args, only counted
	f.Fuzz(func(t *testing.T, id, dir, kernel, initrd, share, mac string, mtu int, serial bool) {
		cfg := &vm.Config{ID: id, Dir: dir, Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 128, Share: share,
			Agent: vm.AgentChannel{Kind: vm.ChannelVsock}, NICs: []vm.NIC{{Tap: tap, TapName: "tap0", MAC: mac, MTU: mtu}}}
		if serial {
			cfg.Agent.Kind = vm.ChannelSerial
		}
		args, err := Args(cfg, AccelTCG, 0, 3)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "qemu vm ") {
				t.Fatalf("Args(%+v) = %v", cfg, err)
			}
			return
		}
		paths := map[string]bool{}
		for _, p := range []string{ConsoleLog, QMPSocket, AgentSocket, VirtiofsSocket} {
			paths[filepath.Join(dir, p)] = true
		}
		for i, a := range args {
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("Args(%+v): argument %q has a NUL byte", cfg, a)
			}
			if i == 0 || !optionLists[args[i-1]] {
				continue
			}
			flag := args[i-1]
			opts := qemuOpts(a)
			if flag == "-qmp" {
				opts[0] = strings.TrimPrefix(opts[0], "unix:")
				opts[0] = "path=" + opts[0]
			}
			seen := map[string]bool{}
			for j, o := range opts {
				k, v, ok := strings.Cut(o, "=")
				if !ok && j == 0 {
					continue // the implied key: the device or backend type
				}
				if !ok || seen[k] {
					t.Fatalf("Args(%+v): %s %q parses to %q: element %q", cfg, flag, a, opts, o)
				}
				seen[k] = true
				switch k {
				case "path":
					if !paths[v] {
						t.Fatalf("Args(%+v): %s %q names path %q", cfg, flag, a, v)
					}
				case "guest":
					if v != id {
						t.Fatalf("Args(%+v): -name %q names guest %q", cfg, a, v)
					}
				case "mac":
					if v != mac {
						t.Fatalf("Args(%+v): mac %q", cfg, v)
					}
				}
			}
		}
	})
}
