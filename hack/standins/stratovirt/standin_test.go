package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

// bzImage writes a file with a bzImage setup header (boot protocol 2.15).
func bzImage(t *testing.T, dir string) string {
	t.Helper()
	k := make([]byte, 0x400)
	copy(k[0x202:], "HdrS")
	k[0x206], k[0x207] = 0x0f, 0x02
	k[0x211] = 1
	p := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(p, k, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// baseArgs is a command line as the driver writes it (console agent
// channel, a share, one tap at fd 3).
func baseArgs(t *testing.T) []string {
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, []byte("070701"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"-machine", "microvm,mem-share=on", "-smp", "1", "-m", "256",
		"-kernel", bzImage(t, dir), "-initrd", initrd, "-append", "console=ttyS0 panic=1",
		"-qmp", "unix:" + dir + "/qmp.sock,server,nowait", "-serial", "file,path=" + dir + "/console.log",
		"-D", dir + "/stratovirt.log", "-daemonize", "-pidfile", dir + "/stratovirt.pid",
		"-device", "virtio-serial-device,id=vser0",
		"-chardev", "socket,id=agent,path=" + dir + "/agent.sock,server,nowait",
		"-device", "virtconsole,id=agentport,chardev=agent,nr=0",
		"-chardev", "socket,id=virtiofs,path=" + dir + "/virtiofs.sock",
		"-device", "vhost-user-fs-device,id=fs0,chardev=virtiofs,tag=magnetar",
		"-netdev", "tap,id=net0,fd=3", "-device", "virtio-net-device,id=nic0,netdev=net0,mac=02:00:00:00:00:01"}
}

// check runs the stand-in's checks up to the machine plan.
func check(argv []string) (*plan, error) {
	g := guidebook.Parse()
	args, err := parseArgs(g, argv)
	if err != nil {
		return nil, err
	}
	c, err := createVMConfig(g, args)
	if err != nil {
		return nil, err
	}
	return realize(g, c)
}

func TestDriverCommandLineAccepted(t *testing.T) {
	p, err := check(baseArgs(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ports) != 1 || !p.ports[0].console || len(p.fs) != 1 || len(p.nics) != 1 || p.qmpPath == "" {
		t.Errorf("plan %+v", p)
	}
	// and the QEMU it runs: TCG microvm with the same devices and fds
	a, fds := qemuArgs(p, 2000000)
	s := strings.Join(a, " ")
	for _, want := range []string{"-accel tcg", "virtconsole,bus=sv-vser.0", "vhost-user-fs-device", "tap,id=sv-net0,fd=3", "tsc_early_khz=2000000", "memory-backend-memfd"} {
		if !strings.Contains(s, want) {
			t.Errorf("qemu args lack %q: %s", want, s)
		}
	}
	if len(fds) != 1 || fds[0] != 3 {
		t.Errorf("inherited fds %v, want [3]", fds)
	}
}

// replace returns argv with the value after opt (its n-th occurrence)
// replaced, or opt and value appended when n < 0.
func replace(argv []string, opt string, n int, value string) []string {
	out := append([]string(nil), argv...)
	if n < 0 {
		return append(out, opt, value)
	}
	for i := range out {
		if out[i] == opt {
			if n == 0 {
				out[i+1] = value
				return out
			}
			n--
		}
	}
	panic(opt)
}

func TestRefusals(t *testing.T) {
	base := baseArgs(t)
	for name, c := range map[string]struct {
		argv []string
		want string
	}{
		"qemu option":             {append(append([]string(nil), base...), "-accel", "tcg"), "Found argument '-accel' which wasn't expected"},
		"qemu -nodefaults":        {append(append([]string(nil), base...), "-nodefaults"), "Found argument '-nodefaults'"},
		"qemu chardev server=on":  {replace(base, "-chardev", 0, "socket,id=agent,path=/tmp/a.sock,server=on,wait=off"), "unexpected argument '--wait'"},
		"virtserialport name":     {replace(base, "-device", 1, "virtserialport,id=p,chardev=agent,nr=0,name=x"), "unexpected argument '--name'"},
		"virtserialport nr 0":     {replace(base, "-device", 1, "virtserialport,id=p,chardev=agent,nr=0"), "reserved for virtconsole"},
		"second port":             {replace(base, "-device", 1, "virtconsole,id=p,chardev=agent,nr=1"), "should be less than virtio serial's max_nr_ports 1"},
		"fs without shared mem":   {replace(base, "-machine", 0, "microvm"), "the memory must be shared"},
		"fs chardev server":       {replace(base, "-chardev", 1, "socket,id=virtiofs,path=/tmp/v.sock,server,nowait"), "is not need for chardev"},
		"informal guest_cid":      {replace(base, "-device", -1, "vhost-vsock-device,id=v,guest_cid=3"), "unexpected argument '--guest_cid'"},
		"guest-cid too small":     {replace(base, "-device", -1, "vhost-vsock-device,id=v,guest-cid=2"), "is not in 3..=4294967294"},
		"memory too small":        {replace(base, "-m", 0, "64"), "Memory size must >= 134217728"},
		"too many cpus":           {replace(base, "-smp", 0, "300"), "is not in 1..=254"},
		"bad mac":                 {replace(base, "-device", 3, "virtio-net-device,id=nic0,netdev=net0,mac=zz"), "Mac address is illegal"},
		"q35":                     {replace(base, "-machine", 0, "q35"), "not emulated"},
		"unknown machine":         {replace(base, "-machine", 0, "pc"), `"pc" is not a documented type`},
		"device twice the netdev": {replace(base, "-device", -1, "virtio-net-device,id=nic1,netdev=net0"), "not found or is in use"},
		"duplicate -m":            {append(append([]string(nil), base...), "-m", "512"), "was provided more than once"},
		"qmp without nowait":      {replace(base, "-qmp", 0, "unix:/tmp/q.sock,server"), "--nowait"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := check(c.argv)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestELFKernelRefused(t *testing.T) {
	argv := baseArgs(t)
	elf := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(elf, append([]byte("\x7fELF"), make([]byte, 0x400)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := check(replace(argv, "-kernel", 0, elf)); err == nil || !strings.Contains(err.Error(), "ELF-format kernel is not supported") {
		t.Errorf("ELF kernel: %v", err)
	}
}

type fakeVM struct{ paused, resumed, quitted int }

func (f *fakeVM) pause() error  { f.paused++; return nil }
func (f *fakeVM) resume() error { f.resumed++; return nil }
func (f *fakeVM) quit()         { f.quitted++ }

func TestQMPCommands(t *testing.T) {
	vm := &fakeVM{}
	s := newQMPServer(nil, vm)
	answer := func(line string) map[string]any {
		t.Helper()
		a, after := s.handle([]byte(line))
		if after != nil {
			after()
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(a), &m); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		return m
	}
	if m := answer(`{"execute":"query-status"}`); m["return"].(map[string]any)["status"] != "running" {
		t.Errorf("query-status: %v", m)
	}
	if m := answer(`{"execute":"stop","id":"a"}`); m["id"] != "a" || m["return"] == nil || vm.paused != 1 {
		t.Errorf("stop: %v", m)
	}
	if m := answer(`{"execute":"query-status"}`); m["return"].(map[string]any)["status"] != "paused" {
		t.Errorf("query-status after stop: %v", m)
	}
	for _, line := range []string{`{"execute":"human-monitor-command","arguments":{"command-line":"info"}}`, `{"execute":"system_powerdown"}`, `{"execute":"query-status","id":1}`, `not json`} {
		if m := answer(line); m["error"] == nil {
			t.Errorf("%s: %v, want an error", line, m)
		}
	}
	if m := answer(`{"execute":"quit"}`); m["return"] == nil || vm.quitted != 1 {
		t.Errorf("quit: %v", m)
	}
}

func TestGreetingIsQMPMd(t *testing.T) {
	q := guidebook.ParseQMP()
	var got, want any
	if err := json.Unmarshal([]byte(greeting), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(q.Greeting), &want); err != nil {
		t.Fatalf("qmp.md greeting %q: %v", q.Greeting, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("greeting %s, qmp.md's %s", gb, wb)
	}
}
