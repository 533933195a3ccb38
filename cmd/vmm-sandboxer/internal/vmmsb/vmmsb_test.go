package vmmsb

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/config/configtest"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	for text, key := range map[string]string{
		"[vm]\naccel = \"hvf\"\n":                                                  "vm.accel",
		"[vm]\nagent = \"pipe\"\n":                                                 "vm.agent",
		"[vm]\ntcg_buffer_mib = -1\n":                                              "vm.tcg_buffer_mib",
		"[vm]\ntcg_buffer_mib = 4096\n":                                            "vm.tcg_buffer_mib",
		"[vm]\nkernel = \"vmlinuz\"\n":                                             "vm.kernel",
		"[vm]\nvcpus = 0\n":                                                        "vm.vcpus",
		"[vm]\nmemory_mib = 9000\n":                                                "vm.memory_mib",
		"[vm]\nboot_timeout = \"0s\"\n":                                            "vm.boot_timeout",
		"[vm]\nagent_log_level = \"loud\"\n":                                       "vm.agent_log_level",
		"[qemu]\nbinary = \"\"\n":                                                  "qemu.binary",
		"[stratovirt]\nvirtiofsd = \"\"\n":                                         "stratovirt.virtiofsd",
		"[cloud_hypervisor]\nvirtiofsd = \"\"\n":                                   "cloud_hypervisor.virtiofsd",
		"[hypervisors]\nmagnetar-fc = \"firecracker\"\n":                           "hypervisors.magnetar-fc",
		"[vm]\ndefault_hypervisor = \"kvmtool\"\n":                                 "vm.default_hypervisor",
		"run_dir = \"/" + strings.Repeat("x", 90) + "\"\n":                         "run_dir",
		"[pool]\nmax_memory_mib = -1\n":                                            "pool.max_memory_mib",
		"[pool]\nrefill_concurrency = 0\n":                                         "pool.refill_concurrency",
		"[[pool.shapes]]\nhypervisor = \"kvmtool\"\nsize = 1\n":                    "pool.shapes[0].hypervisor",
		"[[pool.shapes]]\nvcpus = 9\nsize = 1\n":                                   "pool.shapes[0].vcpus",
		"[[pool.shapes]]\nmemory_mib = 32\nsize = 1\n":                             "pool.shapes[0].memory_mib",
		"[[pool.shapes]]\nsize = 65\n":                                             "pool.shapes[0].size",
		"[[pool.shapes]]\nsize = -1\n":                                             "pool.shapes[0].size",
		"[[pool.shapes]]\nsize = 1\n[[pool.shapes]]\nmemory_mib = 256\nsize = 2\n": "pool.shapes[1]",
		"[pool]\nmax_memory_mib = 500\n[[pool.shapes]]\nsize = 2\n":                "pool.max_memory_mib",
	} {
		if _, err := config.Decode(text, DefaultConfig()); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", text, err, key)
		}
	}
}

func TestPoolShapeDefaults(t *testing.T) {
	c := DefaultConfig()
	_, err := config.Decode("[pool]\nmax_memory_mib = 1024\n[[pool.shapes]]\nsize = 2\n[[pool.shapes]]\nhypervisor = \"cloud-hypervisor\"\nvcpus = 2\nmemory_mib = 512\nsize = 1\n", c)
	if err != nil {
		t.Fatal(err)
	}
	want := []PoolShape{{Hypervisor: HypervisorQEMU, VCPUs: 1, MemoryMiB: 256, Size: 2}, {Hypervisor: HypervisorCLH, VCPUs: 2, MemoryMiB: 512, Size: 1}}
	for i, s := range c.Pool.Shapes {
		if got := c.ResolvedShape(s); got != want[i] {
			t.Errorf("shape %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestCheckHostNamesMissingFiles(t *testing.T) {
	c := DefaultConfig()
	c.QEMU.Binary = "/nonexistent/qemu"
	c.VM.Kernel = "/nonexistent/vmlinuz"
	err := c.CheckHost()
	for _, want := range []string{"vm.kernel", "/nonexistent/vmlinuz", "make guest-image"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckHost: %v, want it to name %q", err, want)
		}
	}
}

func TestSize(t *testing.T) {
	d := &driver{cfg: DefaultConfig()}
	cfg := func(quota, period, mem int64) *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{Resources: &runtime.LinuxContainerResources{
			CpuQuota: quota, CpuPeriod: period, MemoryLimitInBytes: mem}}}
	}
	overhead := func(c *runtime.PodSandboxConfig, quota, mem int64) *runtime.PodSandboxConfig {
		if c.Linux == nil {
			c.Linux = &runtime.LinuxPodSandboxConfig{}
		}
		c.Linux.Overhead = &runtime.LinuxContainerResources{CpuQuota: quota, CpuPeriod: 100000, MemoryLimitInBytes: mem}
		return c
	}
	for _, tc := range []struct {
		c         *runtime.PodSandboxConfig
		cpus, mem int
	}{
		{&runtime.PodSandboxConfig{}, 1, 256},
		{cfg(250000, 100000, 512<<20), 3, 512 + 128},
		{cfg(0, 0, 64<<20), 1, 256},             // below the default
		{cfg(10000000, 100000, 1<<40), 8, 8192}, // capped
		// a RuntimeClass overhead (kubelet): CPU counts it, memory not
		{overhead(cfg(100000, 100000, 512<<20), 25000, 320<<20), 2, 512 + 128},
		{overhead(&runtime.PodSandboxConfig{}, 25000, 320<<20), 1, 256},
	} {
		if c, m := d.size(tc.c); c != tc.cpus || m != tc.mem {
			t.Errorf("size(%v) = %d vCPUs %d MiB, want %d %d", tc.c.GetLinux().GetResources(), c, m, tc.cpus, tc.mem)
		}
	}
}

// fakeHV is a hypervisor that is never asked to start here.
type fakeHV struct{}

func (fakeHV) Name() string { return "fake" }
func (fakeHV) Start(context.Context, *vm.Config) (vm.VM, error) {
	return nil, errdefs.ErrNotImplemented
}
func (fakeHV) Recover(context.Context, json.RawMessage) (vm.VM, error) {
	return nil, errdefs.ErrNotImplemented
}

// fakeKind is a hypervisor kind whose driver is fakeHV, configured in
// [qemu] (tests build their own kinds).
func fakeKind() kind {
	return kind{section: "qemu", conf: func(c *Config) *VMMConf { return &c.QEMU }, new: func() vm.Hypervisor { return fakeHV{} },
		accel:   func(string) (string, error) { return "tcg", nil },
		channel: func(string) (string, error) { return vm.ChannelSerial, nil }}
}

// fakeDriver is a driver of cfg whose hypervisors are fakeHV.
func fakeDriver(t *testing.T, cfg *Config) *driver {
	t.Helper()
	cfg.RunDir = t.TempDir()
	ks := map[string]kind{}
	for _, h := range cfg.UsedHypervisors() {
		ks[h] = fakeKind()
	}
	d, err := newDriver(&daemon.Env{Life: context.Background()}, cfg, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHypervisorMissingFailsItsPods: a hypervisor whose binary is not
// installed does not stop the daemon; its pods fail at Create with
// FailedPrecondition naming the binary and its key, leaving nothing, and
// installing it needs no restart.
func TestHypervisorMissingFailsItsPods(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	cfg := DefaultConfig()
	cfg.QEMU.Binary, cfg.QEMU.Virtiofsd = bin, "/bin/true"
	d := fakeDriver(t, cfg)
	sd := t.TempDir()
	spec := &sandbox.Spec{ID: "p1", Sandboxer: Handler, NetNSPath: "/proc/self/ns/net", Config: &runtime.PodSandboxConfig{}, Dir: sd}
	_, err := d.Create(context.Background(), spec)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Create: %v, want FailedPrecondition", err)
	}
	for _, want := range []string{Handler, "qemu.binary", bin} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Create: %v, want it to name %q", err, want)
		}
	}
	if left, _ := os.ReadDir(sd); len(left) != 0 {
		t.Errorf("a refused Create left %v", left)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(context.Background(), spec); err != nil {
		t.Fatalf("Create once the binary is installed: %v", err)
	}
}

// TestKVMHypervisorNotInstalled: with this binary's kinds, the pods of a
// KVM-only hypervisor whose binary is missing fail naming its key while
// magnetar-vmm's are created; vm.accel = "tcg" cannot run it and stops the
// daemon naming the key.
func TestKVMHypervisorNotInstalled(t *testing.T) {
	for _, c := range []struct {
		hv, handler, key string
		conf             func(*Config) *VMMConf
		channels         []string
	}{
		{HypervisorCLH, HandlerCLH, "cloud_hypervisor.binary", func(c *Config) *VMMConf { return &c.CloudHypervisor }, []string{vm.ChannelHybridVsock}},
		{HypervisorStratoVirt, HandlerStratoVirt, "stratovirt.binary", func(c *Config) *VMMConf { return &c.StratoVirt }, []string{vm.ChannelSerial, vm.ChannelVsock}},
	} {
		t.Run(c.hv, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), c.hv)
			cfg := DefaultConfig()
			cfg.RunDir = t.TempDir()
			cfg.QEMU.Binary, cfg.QEMU.Virtiofsd = "/bin/true", "/bin/true"
			cfg.CloudHypervisor.Virtiofsd, cfg.StratoVirt.Virtiofsd = "/bin/true", "/bin/true"
			c.conf(cfg).Binary = bin
			d, err := newDriver(&daemon.Env{Life: context.Background()}, cfg, kinds, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b := d.backends[c.hv]; b == nil || !slices.Contains(c.channels, b.channel) || b.accel != "kvm" {
				t.Fatalf("%s backend %+v", c.hv, b)
			}
			spec := func(handler string) *sandbox.Spec {
				return &sandbox.Spec{ID: "p-" + handler, Sandboxer: handler, NetNSPath: "/proc/self/ns/net", Config: &runtime.PodSandboxConfig{}, Dir: t.TempDir()}
			}
			_, err = d.Create(context.Background(), spec(c.handler))
			for _, want := range []string{c.handler, c.key, bin} {
				if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), want) {
					t.Errorf("Create on %s: %v, want FailedPrecondition naming %q", c.handler, err, want)
				}
			}
			if inst, err := d.Create(context.Background(), spec(Handler)); err != nil || inst.(*pod).st.Hypervisor != HypervisorQEMU {
				t.Errorf("Create on %s: %v", Handler, err)
			}
			cfg.VM.Accel = "tcg"
			if _, err := newDriver(&daemon.Env{Life: context.Background()}, cfg, kinds, nil); err == nil || !strings.Contains(err.Error(), "vm.accel") {
				t.Errorf("vm.accel = tcg with %s configured: %v", c.hv, err)
			}
		})
	}
}

// TestHypervisorOfSandboxer: the sandboxer name picks the hypervisor, an
// unknown name gets the default one, and the pod records it.
func TestHypervisorOfSandboxer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.QEMU.Binary, cfg.QEMU.Virtiofsd = "/bin/true", "/bin/true"
	cfg.Hypervisors = map[string]string{Handler: HypervisorQEMU}
	d := fakeDriver(t, cfg)
	for _, sb := range []string{Handler, "", "magnetar-other"} {
		inst, err := d.Create(context.Background(), &sandbox.Spec{ID: "p1", Sandboxer: sb, NetNSPath: "/proc/self/ns/net", Config: &runtime.PodSandboxConfig{}, Dir: t.TempDir()})
		if err != nil {
			t.Fatalf("%q: %v", sb, err)
		}
		if h := inst.(*pod).st.Hypervisor; h != HypervisorQEMU {
			t.Errorf("%q: hypervisor %q", sb, h)
		}
	}
}

func TestCreateRefusesAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.QEMU.Binary, cfg.QEMU.Virtiofsd = "/bin/true", "/bin/true"
	d := fakeDriver(t, cfg)
	hostNet := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}}
	notNS := filepath.Join(dir, "not-a-netns")
	os.WriteFile(notNS, nil, 0o600)
	for _, tc := range []struct {
		name, netns, field string
		cfg                *runtime.PodSandboxConfig
	}{
		{"host network", "", "host-network", hostNet},
		{"no netns", "", "netns_path", &runtime.PodSandboxConfig{}},
		{"not a netns", notNS, "netns_path", &runtime.PodSandboxConfig{}},
		{"bad hostname", "/proc/self/ns/net", "hostname", &runtime.PodSandboxConfig{Hostname: "a b"}},
		{"bad cgroup parent", "/proc/self/ns/net", "cgroup_parent", &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: "../x"}}},
	} {
		sd := filepath.Join(dir, "sb")
		os.Mkdir(sd, 0o700)
		_, err := d.Create(context.Background(), &sandbox.Spec{ID: "p1", NetNSPath: tc.netns, Config: tc.cfg, Dir: sd})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
		if left, _ := os.ReadDir(sd); len(left) != 0 {
			t.Errorf("%s left %v", tc.name, left)
		}
		os.RemoveAll(sd)
	}
}

// The shipped vmm.toml shows every default.
func TestDeployedConfigIsTheDefault(t *testing.T) {
	configtest.ShippedIsDefault(t, "../../../../deploy/etc/magnetar/vmm.toml", DefaultConfig)
}

// FuzzConfig: any vmm.toml is decoded to a configuration that validates and
// re-encodes to itself, or refused with an error naming the key or line.
func FuzzConfig(f *testing.F) {
	configtest.Fuzz(f, "../../../../deploy/etc/magnetar/vmm.toml", DefaultConfig,
		"[vm]\nboot_timeout = 30\n", "[vm]\nboot_timeout = \"-1s\"\n", "[vm]\nvcpus = -1\nmemory_mib = 1\n", "[pod]\nstop_timeout = \"1h30m\"\n", "[hypervisors]\nx = \"/bin/x\"\n", "listen = \"relative\"\n", "[qemu]\nbinray = \"x\"\n")
}
