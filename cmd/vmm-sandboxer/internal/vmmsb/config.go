package vmmsb

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/clh"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/stratovirt"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// Name is the sandboxer's short name.
const Name = "vmm"

// Handler is the runtime handler (containerd proxy plugin) of QEMU VMs, the
// default.
const Handler = "magnetar-vmm"

// HandlerCLH is the runtime handler of Cloud Hypervisor VMs.
const HandlerCLH = "magnetar-clh"

// HandlerStratoVirt is the runtime handler of StratoVirt VMs.
const HandlerStratoVirt = "magnetar-stratovirt"

// Defaults of the files `make guest-image` builds, where the package installs
// them.
const (
	DefaultKernel = "/usr/share/magnetar/vmm/vmlinuz"
	DefaultInitrd = "/usr/share/magnetar/vmm/initramfs.cpio"
)

// Config is the vmm sandboxer's configuration (/etc/magnetar/vmm.toml).
type Config struct {
	config.Daemon
	// RunDir holds one short directory per running VM (sockets, pid files,
	// console log): unix socket paths are bounded to 107 bytes.
	RunDir string `toml:"run_dir"`
	// Hypervisors maps a containerd proxy plugin name (the `sandboxer` of
	// a CRI runtime handler, sent with every Controller.Create) to the
	// hypervisor its pods run on.
	Hypervisors map[string]string `toml:"hypervisors"`
	VM          VMConfig          `toml:"vm"`
	QEMU        VMMConf           `toml:"qemu"`
	// CloudHypervisor is [cloud_hypervisor].
	CloudHypervisor VMMConf `toml:"cloud_hypervisor"`
	// StratoVirt is [stratovirt].
	StratoVirt VMMConf `toml:"stratovirt"`
	Pod        PodConf `toml:"pod"`
	// Pool is [pool]: VMs booted ahead of their pods.
	Pool PoolConf `toml:"pool"`
}

// PoolConf is the warm pool: VMs booted ahead of the pods that will use
// them, per shape. Off (no shapes) by default.
type PoolConf struct {
	// Shapes are the VMs to keep ready ([[pool.shapes]]).
	Shapes []PoolShape `toml:"shapes"`
	// MaxMemoryMiB bounds the guest memory of the pool's VMs (ready and
	// booting); 0 is no bound beyond the shapes' sizes.
	MaxMemoryMiB int `toml:"max_memory_mib"`
	// RefillConcurrency is how many pool VMs boot at a time.
	RefillConcurrency int `toml:"refill_concurrency"`
}

// PoolShape is one VM shape of the pool. A pod takes a pooled VM when its
// own VM (vm.vcpus and vm.memory_mib raised by its limits) is of exactly
// this shape and hypervisor; any other pod boots its own.
type PoolShape struct {
	// Hypervisor is the shape's hypervisor (vm.default_hypervisor when
	// empty).
	Hypervisor string `toml:"hypervisor"`
	// VCPUs and MemoryMiB are the VM's size (vm.vcpus and vm.memory_mib
	// when 0: the VM of a pod without limits).
	VCPUs     int `toml:"vcpus"`
	MemoryMiB int `toml:"memory_mib"`
	// Size is the number of VMs kept ready.
	Size int `toml:"size"`
}

// maxPoolSize bounds pool.shapes[].size: a pool holds booted guests.
const maxPoolSize = 64

// VMConfig is what every pod VM gets.
type VMConfig struct {
	// DefaultHypervisor runs the pods of a sandboxer name missing from
	// Hypervisors (e.g. `ctr sandbox run`, which names none).
	DefaultHypervisor string `toml:"default_hypervisor"`
	// Kernel and Initrd are the guest kernel and initramfs.
	Kernel string `toml:"kernel"`
	Initrd string `toml:"initrd"`
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string `toml:"kernel_args"`
	// Accel: "auto" (KVM where the host really runs a guest with it, else
	// TCG), "kvm" or "tcg".
	Accel string `toml:"accel"`
	// TCGBufferMiB bounds QEMU's translated-code buffer under TCG
	// (-accel tcg,tb-size=), MiB: QEMU's own memory in a pod's cgroup
	// beside the guest's; 0 is QEMU's default (1 GiB). Unused under KVM.
	TCGBufferMiB int `toml:"tcg_buffer_mib"`
	// Agent is the agent's channel: "auto" (vsock where the host has
	// vhost-vsock, else virtio-serial), "vsock" or "serial".
	Agent string `toml:"agent"`
	// BootTimeout bounds a VM's boot up to its agent's first answer.
	BootTimeout config.Duration `toml:"boot_timeout"`
	// AgentLogLevel is the agent's log level on the console.
	AgentLogLevel string `toml:"agent_log_level"`
	// VCPUs and MemoryMiB are a pod's VM without resource limits; the
	// pod's limits (the sum of its containers', plus its overhead) raise
	// them, up to MaxVCPUs and MaxMemoryMiB. MemoryOverheadMiB is added
	// to a pod's memory limit for the guest kernel and agent.
	VCPUs             int `toml:"vcpus"`
	MemoryMiB         int `toml:"memory_mib"`
	MaxVCPUs          int `toml:"max_vcpus"`
	MaxMemoryMiB      int `toml:"max_memory_mib"`
	MemoryOverheadMiB int `toml:"memory_overhead_mib"`
}

// VMMConf locates a hypervisor and its helpers: one section per
// hypervisor ([qemu], ...).
type VMMConf struct {
	// Binary is the VMM (a name is looked up in PATH).
	Binary string `toml:"binary"`
	// Virtiofsd is the virtio-fs daemon.
	Virtiofsd string `toml:"virtiofsd"`
}

// PodConf holds pod defaults.
type PodConf struct {
	// StopTimeout is the grace period of the containers still running when
	// Controller.Stop gives no timeout, and of the guest's power-off.
	StopTimeout config.Duration `toml:"stop_timeout"`
}

// DefaultTCGBufferMiB is vm.tcg_buffer_mib's default: a guest boots in
// the same time with it as with QEMU's 1 GiB (it translates about 60 MiB of
// code on its way to the agent), and QEMU's memory stays within the
// RuntimeClass's overhead when the guest runs more code than that (a full
// buffer is flushed and code translated again).
const DefaultTCGBufferMiB = 64

// maxTCGBufferMiB is QEMU's own limit on tb-size (2 GiB on x86_64 hosts).
const maxTCGBufferMiB = 2048

// DefaultConfig is the configuration with every default.
func DefaultConfig() *Config {
	return &Config{
		Daemon:      config.DefaultDaemon(Name),
		RunDir:      filepath.Join(config.DefaultRunDir, Name),
		Hypervisors: map[string]string{Handler: HypervisorQEMU, HandlerCLH: HypervisorCLH, HandlerStratoVirt: HypervisorStratoVirt},
		VM: VMConfig{
			DefaultHypervisor: HypervisorQEMU, Kernel: DefaultKernel, Initrd: DefaultInitrd, KernelArgs: []string{},
			Accel: "auto", Agent: "auto", TCGBufferMiB: DefaultTCGBufferMiB,
			BootTimeout: config.Duration(60 * time.Second), AgentLogLevel: "info",
			VCPUs: 1, MemoryMiB: 256, MaxVCPUs: 8, MaxMemoryMiB: 8192, MemoryOverheadMiB: 128,
		},
		QEMU: VMMConf{Binary: "qemu-system-x86_64", Virtiofsd: "/usr/lib/qemu/virtiofsd"},
		// the Rust virtiofsd Cloud Hypervisor's docs use (Debian 13, Ubuntu
		// 24.04: package virtiofsd)
		CloudHypervisor: VMMConf{Binary: clh.DefaultBinary, Virtiofsd: "/usr/libexec/virtiofsd"},
		// StratoVirt's own vhost_user_fs is gone: its guidebook points to
		// the Rust virtiofsd (package virtiofsd on Debian 13, Ubuntu 24.04,
		// openEuler)
		StratoVirt: VMMConf{Binary: stratovirt.DefaultBinary, Virtiofsd: "/usr/libexec/virtiofsd"},
		Pod:        PodConf{StopTimeout: config.Duration(10 * time.Second)},
		Pool:       PoolConf{Shapes: []PoolShape{}, RefillConcurrency: 1},
	}
}

// Common returns the keys every sandboxer has.
func (c *Config) Common() *config.Daemon { return &c.Daemon }

// StopTimeout is pod.stop_timeout (daemon.StopTimeouter).
func (c *Config) StopTimeout() time.Duration { return time.Duration(c.Pod.StopTimeout) }

// Validate checks the configuration's values.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.Daemon.Validate())
	errs = append(errs, config.CheckRunDir(c.RunDir, "virtiofs.sock", "the VMs' unix sockets"))
	for _, f := range []struct{ key, v string }{{"vm.kernel", c.VM.Kernel}, {"vm.initrd", c.VM.Initrd}} {
		if !filepath.IsAbs(f.v) {
			errs = append(errs, fmt.Errorf("%s = %q: must be an absolute path", f.key, f.v))
		}
	}
	switch c.VM.Accel {
	case "auto", "kvm", "tcg":
	default:
		errs = append(errs, fmt.Errorf("vm.accel = %q: want auto, kvm or tcg", c.VM.Accel))
	}
	switch c.VM.Agent {
	case "auto", "vsock", "serial":
	default:
		errs = append(errs, fmt.Errorf("vm.agent = %q: want auto, vsock or serial", c.VM.Agent))
	}
	switch c.VM.AgentLogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("vm.agent_log_level = %q: want debug, info, warn or error", c.VM.AgentLogLevel))
	}
	if c.VM.BootTimeout <= 0 {
		errs = append(errs, fmt.Errorf("vm.boot_timeout = %q: must be positive", c.VM.BootTimeout))
	}
	for _, n := range []struct {
		key       string
		v, lo, hi int
		hiKey     string
	}{
		{"vm.vcpus", c.VM.VCPUs, 1, c.VM.MaxVCPUs, "vm.max_vcpus"},
		{"vm.memory_mib", c.VM.MemoryMiB, 64, c.VM.MaxMemoryMiB, "vm.max_memory_mib"},
	} {
		if n.v < n.lo {
			errs = append(errs, fmt.Errorf("%s = %d: must be at least %d", n.key, n.v, n.lo))
		} else if n.v > n.hi {
			errs = append(errs, fmt.Errorf("%s = %d: above %s = %d", n.key, n.v, n.hiKey, n.hi))
		}
	}
	if c.VM.TCGBufferMiB < 0 || c.VM.TCGBufferMiB > maxTCGBufferMiB {
		errs = append(errs, fmt.Errorf("vm.tcg_buffer_mib = %d: want 0 (QEMU's default) to %d", c.VM.TCGBufferMiB, maxTCGBufferMiB))
	}
	if c.VM.MemoryOverheadMiB < 0 {
		errs = append(errs, fmt.Errorf("vm.memory_overhead_mib = %d: must not be negative", c.VM.MemoryOverheadMiB))
	}
	names := make([]string, 0, len(c.Hypervisors))
	for h := range c.Hypervisors {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		if h == "" {
			errs = append(errs, fmt.Errorf("hypervisors: a sandboxer name must not be empty"))
		}
		if _, ok := kinds[c.Hypervisors[h]]; !ok {
			errs = append(errs, fmt.Errorf("hypervisors.%s = %q: unknown hypervisor (this binary has: %s)", h, c.Hypervisors[h], kindNames()))
		}
	}
	if _, ok := kinds[c.VM.DefaultHypervisor]; !ok {
		errs = append(errs, fmt.Errorf("vm.default_hypervisor = %q: unknown hypervisor (this binary has: %s)", c.VM.DefaultHypervisor, kindNames()))
	}
	for _, name := range c.UsedHypervisors() {
		k, ok := kinds[name]
		if !ok {
			continue
		}
		conf := k.conf(c)
		if conf.Binary == "" {
			errs = append(errs, fmt.Errorf("%s.binary: must not be empty", k.section))
		}
		if conf.Virtiofsd == "" {
			errs = append(errs, fmt.Errorf("%s.virtiofsd: must not be empty", k.section))
		}
	}
	if c.Pod.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("pod.stop_timeout = %q: must not be negative", c.Pod.StopTimeout))
	}
	errs = append(errs, c.validatePool()...)
	return config.Join(errs...)
}

// validatePool checks [pool]; each error names its key.
func (c *Config) validatePool() []error {
	var errs []error
	p := &c.Pool
	if p.MaxMemoryMiB < 0 {
		errs = append(errs, fmt.Errorf("pool.max_memory_mib = %d: must not be negative", p.MaxMemoryMiB))
	}
	if p.RefillConcurrency < 1 || p.RefillConcurrency > 16 {
		errs = append(errs, fmt.Errorf("pool.refill_concurrency = %d: want 1 to 16", p.RefillConcurrency))
	}
	used := map[string]bool{}
	for _, h := range c.UsedHypervisors() {
		used[h] = true
	}
	seen := map[PoolShape]int{}
	total := 0
	for i, s := range p.Shapes {
		key := fmt.Sprintf("pool.shapes[%d]", i)
		r := c.ResolvedShape(s)
		if !used[r.Hypervisor] {
			errs = append(errs, fmt.Errorf("%s.hypervisor = %q: not a hypervisor of this daemon's handlers (hypervisors, vm.default_hypervisor)", key, r.Hypervisor))
		}
		if r.VCPUs < 1 || r.VCPUs > c.VM.MaxVCPUs {
			errs = append(errs, fmt.Errorf("%s.vcpus = %d: want 1 to vm.max_vcpus = %d", key, s.VCPUs, c.VM.MaxVCPUs))
		}
		if r.MemoryMiB < 64 || r.MemoryMiB > c.VM.MaxMemoryMiB {
			errs = append(errs, fmt.Errorf("%s.memory_mib = %d: want 64 to vm.max_memory_mib = %d", key, s.MemoryMiB, c.VM.MaxMemoryMiB))
		}
		if s.Size < 0 || s.Size > maxPoolSize {
			errs = append(errs, fmt.Errorf("%s.size = %d: want 0 to %d", key, s.Size, maxPoolSize))
		}
		r.Size = 0
		if j, dup := seen[r]; dup {
			errs = append(errs, fmt.Errorf("%s: the same shape as pool.shapes[%d] (%s, %d vCPUs, %d MiB)", key, j, r.Hypervisor, r.VCPUs, r.MemoryMiB))
		}
		seen[r] = i
		total += s.Size * r.MemoryMiB
	}
	if p.MaxMemoryMiB > 0 && total > p.MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("pool.max_memory_mib = %d: below what pool.shapes keep ready (%d MiB of guest memory)", p.MaxMemoryMiB, total))
	}
	return errs
}

// ResolvedShape is s with its defaults filled in (hypervisor, vCPUs,
// memory) and its size kept.
func (c *Config) ResolvedShape(s PoolShape) PoolShape {
	if s.Hypervisor == "" {
		s.Hypervisor = c.VM.DefaultHypervisor
	}
	if s.VCPUs == 0 {
		s.VCPUs = c.VM.VCPUs
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = c.VM.MemoryMiB
	}
	return s
}

// HypervisorFor is the hypervisor that runs the pods of a sandboxer name.
func (c *Config) HypervisorFor(sandboxer string) string {
	if h, ok := c.Hypervisors[sandboxer]; ok {
		return h
	}
	return c.VM.DefaultHypervisor
}

// UsedHypervisors lists every hypervisor the configuration refers to,
// sorted.
func (c *Config) UsedHypervisors() []string {
	set := map[string]bool{c.VM.DefaultHypervisor: true}
	for _, h := range c.Hypervisors {
		set[h] = true
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// CheckHost checks the guest files the configuration names. A hypervisor's
// binaries are checked when the daemon starts, without stopping it: one
// hypervisor missing does not stop the others, and its pods fail naming
// the binary and its key.
func (c *Config) CheckHost() error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"vm.kernel", c.VM.Kernel}, {"vm.initrd", c.VM.Initrd}} {
		if err := config.ExistingFile(f.key, f.v); err != nil {
			errs = append(errs, fmt.Errorf("%w (build it with `make guest-image`, or install the magnetar-vmm package)", err))
		}
	}
	return config.Join(errs...)
}

var (
	_ daemon.Config        = (*Config)(nil)
	_ daemon.StopTimeouter = (*Config)(nil)
	_ config.HostChecker   = (*Config)(nil)
)
