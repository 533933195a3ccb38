package clh

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi/clhvalidate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testConfig is a pod VM in dir with share (none when empty) and nics taps.
func testConfig(dir, share string, nics int) *vm.Config {
	cfg := &vm.Config{ID: "4f6a0b3c9d2e", Dir: dir, Kernel: "/usr/share/magnetar/vmm/vmlinuz",
		Initrd: "/usr/share/magnetar/vmm/initramfs.cpio", KernelArgs: []string{"magnetar.log=info"},
		VCPUs: 2, MemoryMiB: 384, Share: share, ShareTag: "magnetar",
		Agent: vm.AgentChannel{Kind: vm.ChannelHybridVsock}, Accel: AccelKVM}
	macs := []string{"b2:3c:4d:5e:6f:70", "b2:3c:4d:5e:6f:71"}
	for i := 0; i < nics; i++ {
		cfg.NICs = append(cfg.NICs, vm.NIC{Tap: os.Stdin, TapName: "tap" + string(rune('0'+i)), MAC: macs[i], MTU: 1450 - 50*i})
	}
	return cfg
}

// newRequest is op as a client on the socket sends it.
func newRequest(t *testing.T, op operation, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(op.method, "http://localhost"+clhapi.BasePath+op.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	} else {
		r.Body = http.NoBody
	}
	return r
}

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// TestGolden pins the command line and every request body the driver sends
// (testdata/*), and checks each golden body against the OpenAPI document:
// the operation exists, the body matches its schema, and it uses no
// property the document does not define.
func TestGolden(t *testing.T) {
	v, err := clhvalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	const dir = "/run/magnetar/vmm/0123456789abcdef"
	check := func(name string, op operation, body any) {
		t.Helper()
		b, err := json.MarshalIndent(body, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, append(b, '\n'))
		// what the golden file holds is what the document must accept
		g, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Body(context.Background(), op.method, op.path, g); err != nil {
			t.Errorf("%s is not a valid %s body: %v", name, op, err)
		}
	}
	golden(t, "args.golden", []byte(strings.Join(Args(testConfig(dir, "", 0)), "\n")+"\n"))
	withShare, err := VMConfig(testConfig(dir, "/var/lib/magnetar/vmm/sandboxes/4f6a0b3c9d2e/share", 2))
	if err != nil {
		t.Fatal(err)
	}
	check("vm-create.json", opCreate, withShare)
	noShare, err := VMConfig(testConfig(dir, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	check("vm-create-noshare.json", opCreate, noShare)
	for i, n := range testConfig(dir, "", 2).NICs {
		check("vm-add-net-"+string(rune('0'+i))+".json", opAddNet, NetConfig(i, n))
	}
	// the operations without a body must be valid without one
	for _, op := range []operation{opPing, opBoot, opInfo, opShutdownVM, opShutdownVMM} {
		if err := v.Body(context.Background(), op.method, op.path, nil); err != nil {
			t.Errorf("%s: %v", op, err)
		}
	}
}

// TestGoldenFilesAreChecked: the document check above can fail (a body
// with a property the document lacks, or without a required one).
func TestGoldenFilesAreChecked(t *testing.T) {
	v, err := clhvalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/vm-create.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["memory"].(map[string]any)["sharedd"] = true
	bad, _ := json.Marshal(m)
	if err := v.Body(context.Background(), "PUT", "/vm.create", bad); err == nil || !strings.Contains(err.Error(), "memory.sharedd") {
		t.Errorf("an unknown property passed: %v", err)
	}
	delete(m["memory"].(map[string]any), "sharedd")
	delete(m["memory"].(map[string]any), "size")
	bad, _ = json.Marshal(m)
	if err := v.Body(context.Background(), "PUT", "/vm.create", bad); err == nil {
		t.Error("a memory without size passed")
	}
}

func TestKernelArgs(t *testing.T) {
	cfg := testConfig("/r", "/s", 0)
	got := strings.Join(KernelArgs(cfg), " ")
	want := "console=ttyS0 panic=-1 quiet magnetar.transport=vsock:1024 magnetar.share=virtiofs:magnetar magnetar.log=info"
	if got != want {
		t.Errorf("kernel args\n got %s\nwant %s", got, want)
	}
	cfg.Share, cfg.Agent.Port = "", 2048
	if got := strings.Join(KernelArgs(cfg), " "); !strings.Contains(got, "magnetar.share=none") || !strings.Contains(got, "vsock:2048") {
		t.Errorf("kernel args without a share, port 2048: %s", got)
	}
}

func TestValidateRefuses(t *testing.T) {
	base := func() vm.Config { return *testConfig("/run/vm", "/run/share", 1) }
	for _, c := range []struct {
		name  string
		edit  func(*vm.Config)
		class func(error) bool
	}{
		{"no id", func(c *vm.Config) { c.ID = "" }, errdefs.IsInvalidArgument},
		{"relative dir", func(c *vm.Config) { c.Dir = "run/vm" }, errdefs.IsInvalidArgument},
		{"comma in dir", func(c *vm.Config) { c.Dir = "/run/a,b" }, errdefs.IsInvalidArgument},
		{"long dir", func(c *vm.Config) { c.Dir = "/" + strings.Repeat("d", 100) }, errdefs.IsInvalidArgument},
		{"no kernel", func(c *vm.Config) { c.Kernel = "" }, errdefs.IsInvalidArgument},
		{"no memory", func(c *vm.Config) { c.MemoryMiB = 0 }, errdefs.IsInvalidArgument},
		{"relative share", func(c *vm.Config) { c.Share = "share" }, errdefs.IsInvalidArgument},
		{"long tag", func(c *vm.Config) { c.ShareTag = strings.Repeat("t", 37) }, errdefs.IsInvalidArgument},
		{"serial channel", func(c *vm.Config) { c.Agent.Kind = vm.ChannelSerial }, errdefs.IsNotImplemented},
		{"vsock channel", func(c *vm.Config) { c.Agent.Kind = vm.ChannelVsock }, errdefs.IsNotImplemented},
		{"no channel", func(c *vm.Config) { c.Agent.Kind = "" }, errdefs.IsInvalidArgument},
		{"tcg", func(c *vm.Config) { c.Accel = "tcg" }, errdefs.IsInvalidArgument},
		{"nic without tap", func(c *vm.Config) { c.NICs[0].Tap = nil }, errdefs.IsInvalidArgument},
		{"bad mac", func(c *vm.Config) { c.NICs[0].MAC = "02:00" }, errdefs.IsInvalidArgument},
	} {
		cfg := base()
		c.edit(&cfg)
		if _, err := VMConfig(&cfg); !c.class(err) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
}

func TestAccel(t *testing.T) {
	for _, want := range []string{"auto", "kvm", ""} {
		if got, err := Accel(want); err != nil || got != AccelKVM {
			t.Errorf("Accel(%q) = %q, %v", want, got, err)
		}
	}
	if _, err := Accel("tcg"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "vm.accel") {
		t.Errorf("Accel(tcg): %v", err)
	}
	for _, want := range []string{"auto", "vsock", "serial"} {
		if got, _ := AgentChannel(want); got != vm.ChannelHybridVsock {
			t.Errorf("AgentChannel(%q) = %q", want, got)
		}
	}
}
