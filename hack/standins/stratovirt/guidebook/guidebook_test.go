package guidebook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestGrammarShape(t *testing.T) {
	g := Parse()
	for _, c := range []struct {
		opt, kind string
		props     []string
	}{
		{"-machine", "", []string{"type", "mem-share", "dump-guest-core", "accel"}},
		{"-smp", "", []string{"cpus", "maxcpus", "sockets"}},
		{"-m", "", []string{"size", "maxmem"}},
		{"-qmp", "unix:", []string{"server", "nowait"}},
		{"-chardev", "socket", []string{"id", "path", "server", "nowait"}},
		{"-chardev", "file", []string{"id", "path"}},
		{"-serial", "file", []string{"path"}},
		{"-serial", "chardev:", nil},
		{"-netdev", "tap", []string{"id", "fd", "ifname"}},
		{"-device", "virtio-net-device", []string{"id", "netdev", "mac"}},
		{"-device", "virtio-serial-device", []string{"id"}},
		{"-device", "virtconsole", []string{"id", "chardev", "nr"}},
		{"-device", "virtserialport", []string{"id", "chardev", "nr"}},
		{"-device", "vhost-vsock-device", []string{"id", "guest-cid", "vhostfd"}},
		{"-device", "vhost-user-fs-device", []string{"id", "chardev", "tag"}},
		{"-device", "virtio-blk-device", []string{"id", "drive"}},
	} {
		o := g.Options[c.opt]
		if o == nil || !o.List || !o.Has(c.kind) {
			t.Errorf("%s %q: not in the grammar (%+v)", c.opt, c.kind, o)
			continue
		}
		for _, p := range c.props {
			if !o.Property(c.kind, p) {
				t.Errorf("%s %q: no property %s", c.opt, c.kind, p)
			}
		}
	}
	for _, n := range []string{"-daemonize", "-mem-prealloc", "-disable-seccomp", "-D"} {
		if o := g.Options[n]; o == nil || !o.Bare {
			t.Errorf("%s: not a bare option: %+v", n, o)
		}
	}
	for _, n := range []string{"-kernel", "-initrd", "-append", "-pidfile", "-D", "-mem-path"} {
		if o := g.Options[n]; o == nil || !o.Valued || o.List {
			t.Errorf("%s: not a free-valued option: %+v", n, o)
		}
	}
	if m := g.Options["-machine"]; m.Positional != "type" || !slices.Equal(m.PositionalValues, []string{"none", "microvm", "q35", "virt"}) {
		t.Errorf("-machine positional %q %q", m.Positional, m.PositionalValues)
	}
	if g.Options["-smp"].Positional != "cpus" || g.Options["-m"].Positional != "size" {
		t.Error("positional -smp / -m")
	}
	// ozone's options are not StratoVirt's
	for _, n := range []string{"-exec_file", "-uid", "-capability", "-clean-resource"} {
		if g.Options[n] != nil {
			t.Errorf("%s (ozone's) taken as StratoVirt's", n)
		}
	}
}

// TestQEMUOnlyRefused: what QEMU has and the guidebook does not define is
// not in the grammar.
func TestQEMUOnlyRefused(t *testing.T) {
	g := Parse()
	for _, argv := range [][]string{
		{"-name", "guest=x"},
		{"-accel", "kvm"},
		{"-nodefaults"},
		{"-no-reboot"},
		{"-no-user-config"},
		{"-enable-kvm"},
		{"-cpu", "max"},
		{"-machine", "pc"},
		{"-machine", "microvm,memory-backend=mem"},
		{"-object", "memory-backend-memfd,id=mem,size=1G,share=on"},
		{"-chardev", "socket,id=a,path=/p,server=on,wait=off"},
		{"-qmp", "unix:/q,server=on,wait=off"},
		{"-device", "virtserialport,bus=vser0.0,chardev=agent,name=magnetar.agent"},
		{"-device", "virtio-net-device,netdev=n0,mac=02:00:00:00:00:01,host_mtu=1450"},
		{"-device", "vhost-vsock-pci-non-transitional,guest-cid=3"},
		{"-global", "virtio-mmio.force-legacy=false"},
		{"-serial", "file:/tmp/x"},
		{"-kernel"},
	} {
		if err := g.Check(argv); err == nil {
			t.Errorf("%q accepted", argv)
		}
	}
	ok := []string{"-machine", "microvm,mem-share=on", "-smp", "2", "-m", "512", "-kernel", "/k", "-initrd", "/i",
		"-append", "console=ttyS0 panic=1", "-qmp", "unix:/q.sock,server,nowait", "-serial", "file,path=/c.log",
		"-D", "/l", "-daemonize", "-pidfile", "/p", "-D",
		"-device", "virtio-serial-device,id=vser0", "-chardev", "socket,id=agent,path=/a.sock,server,nowait",
		"-device", "virtconsole,id=c0,chardev=agent,nr=0", "-netdev", "tap,id=n0,fd=3",
		"-device", "virtio-net-device,id=nic0,netdev=n0,mac=02:00:00:00:00:01"}
	if err := g.Check(ok); err != nil {
		t.Errorf("a documented command line refused: %v", err)
	}
}

func TestQMPDoc(t *testing.T) {
	q := ParseQMP()
	for _, c := range []string{"quit", "query-status", "stop", "cont", "device_add", "device_del", "getfd", "system_powerdown"} {
		if !slices.Contains(q.Commands, c) {
			t.Errorf("%s not among qmp.md's commands %q", c, q.Commands)
		}
	}
	// not in qmp.md (QEMU has them; StratoVirt's parser has qmp_capabilities, the document does not)
	for _, c := range []string{"qmp_capabilities", "query-cpus", "human-monitor-command", "Introduction"} {
		if slices.Contains(q.Commands, c) {
			t.Errorf("%s among qmp.md's commands", c)
		}
	}
	var g struct {
		QMP struct {
			Version map[string]json.RawMessage `json:"version"`
		} `json:"QMP"`
	}
	if err := json.Unmarshal([]byte(q.Greeting), &g); err != nil || g.QMP.Version["StratoVirt"] == nil {
		t.Errorf("greeting %q: %v", q.Greeting, err)
	}
	for _, c := range []string{"quit", "query-status"} {
		ex := q.Examples[c]
		if len(ex) < 2 || !ex[0].Sent || !strings.Contains(ex[0].JSON, `"`+c+`"`) {
			t.Errorf("%s example %+v", c, ex)
		}
		for _, l := range ex {
			if !l.Valid() {
				t.Errorf("%s example line %q is not JSON", c, l.JSON)
			}
		}
	}
	// the document has a broken example (a missing quote)
	bad := 0
	for _, c := range q.Commands {
		for _, l := range q.Examples[c] {
			if !l.Valid() {
				bad++
			}
		}
	}
	if bad != 1 {
		t.Errorf("%d examples are not JSON, want qmp.md's one typo (blockdev-snapshot-delete-internal-sync)", bad)
	}
}
