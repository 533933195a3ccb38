package gvisorsb

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
)

// Name is the sandboxer's short name.
const Name = "gvisor"

// Config is the gVisor sandboxer's configuration (/etc/magnetar/gvisor.toml).
type Config struct {
	config.Daemon
	Runsc RunscConfig `toml:"runsc"`
	Pod   PodConfig   `toml:"pod"`
}

// RunscConfig is how runsc is run.
type RunscConfig struct {
	// Binary is the runsc binary: a name looked up in PATH, or an absolute
	// path; CheckHost replaces it by the absolute path it checked (every
	// runsc call, a shim-style delete too, uses that one).
	Binary string `toml:"binary"`
	// Platform is runsc's --platform: how the sentry intercepts the
	// application's system calls.
	Platform string `toml:"platform"`
	// Flags are more global flags given to every runsc call of every pod
	// ("--debug", "--overlay2=root:memory", ...). Those the sandboxer sets
	// itself are refused (ownedFlags).
	Flags []string `toml:"flags"`
	// Monitor is how a container's exit and statistics are learnt:
	// "control" (the sandbox's control socket: no process per container)
	// or "processes" (a `runsc wait` process per running container and a
	// `runsc events --stats` process per statistics request, as gVisor's
	// containerd shim does).
	Monitor string `toml:"monitor"`
}

// PodConfig holds pod defaults.
type PodConfig struct {
	// CgroupParent is the cgroup under which a pod whose CRI config names
	// no cgroup_parent gets its own (<parent>/<pod id>).
	CgroupParent string `toml:"cgroup_parent"`
	// StopTimeout is the grace period (SIGTERM, then SIGKILL) of the
	// containers still running when Controller.Stop gives no timeout.
	StopTimeout config.Duration `toml:"stop_timeout"`
	// StartTimeout bounds a pod's start: runsc create and start of the
	// pod's root container.
	StartTimeout config.Duration `toml:"start_timeout"`
	// PauseBinary is the static binary that runs as each pod's root
	// container (it reaps orphans and waits for SIGTERM): "" is
	// magnetar-podinit beside the daemon, else the daemon itself. It is
	// copied, alone, into the pause rootfs below dir.
	PauseBinary string `toml:"pause_binary"`
}

// LibDir is where the magnetar-gvisor package installs the runsc it was
// tested with and the pause binary (magnetar-podinit): the defaults of
// runsc.binary and pod.pause_binary.
const LibDir = "/usr/lib/magnetar/gvisor"

// Platforms are runsc's platforms.
var Platforms = []string{"systrap", "ptrace", "kvm"}

// Monitors are the values of runsc.monitor.
var Monitors = []string{"control", "processes"}

// ownedFlags are the global flags the sandboxer gives runsc itself.
var ownedFlags = []string{"root", "log", "log-format", "platform", "network"}

// DefaultConfig is the configuration with every default.
func DefaultConfig() *Config {
	return &Config{
		Daemon: config.DefaultDaemon(Name),
		Runsc:  RunscConfig{Binary: filepath.Join(LibDir, "runsc"), Platform: "systrap", Flags: []string{}, Monitor: "control"},
		Pod: PodConfig{
			CgroupParent: "/magnetar-gvisor",
			StopTimeout:  config.Duration(10 * time.Second),
			StartTimeout: config.Duration(60 * time.Second),
			PauseBinary:  filepath.Join(LibDir, podinit.Binary),
		},
	}
}

// StopTimeout is pod.stop_timeout (daemon.StopTimeouter).
func (c *Config) StopTimeout() time.Duration { return time.Duration(c.Pod.StopTimeout) }

// Common returns the keys every sandboxer has.
func (c *Config) Common() *config.Daemon { return &c.Daemon }

// Validate checks the configuration.
func (c *Config) Validate() error {
	errs := []error{c.Daemon.Validate()}
	switch b := c.Runsc.Binary; {
	case b == "":
		errs = append(errs, fmt.Errorf("runsc.binary: must not be empty"))
	case strings.Contains(b, "/") && !filepath.IsAbs(b):
		errs = append(errs, fmt.Errorf("runsc.binary = %q: want a name looked up in PATH or an absolute path", b))
	}
	if !slices.Contains(Platforms, c.Runsc.Platform) {
		errs = append(errs, fmt.Errorf("runsc.platform = %q: want one of %s", c.Runsc.Platform, strings.Join(Platforms, ", ")))
	}
	if !slices.Contains(Monitors, c.Runsc.Monitor) {
		errs = append(errs, fmt.Errorf("runsc.monitor = %q: want one of %s", c.Runsc.Monitor, strings.Join(Monitors, ", ")))
	}
	for i, f := range c.Runsc.Flags {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		switch {
		case !strings.HasPrefix(f, "-") || name == "":
			errs = append(errs, fmt.Errorf("runsc.flags[%d] = %q: want a flag such as \"--debug\" or \"--overlay2=root:memory\"", i, f))
		case slices.Contains(ownedFlags, name):
			errs = append(errs, fmt.Errorf("runsc.flags[%d] = %q: --%s is set by the sandboxer (per pod, or by its own key)", i, f, name))
		}
	}
	if p := c.Pod.CgroupParent; !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		errs = append(errs, fmt.Errorf("pod.cgroup_parent = %q: want an absolute, clean cgroup path other than /", p))
	}
	if c.Pod.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("pod.stop_timeout = %q: must not be negative", c.Pod.StopTimeout))
	}
	if p := c.Pod.PauseBinary; p != "" && !filepath.IsAbs(p) {
		errs = append(errs, fmt.Errorf("pod.pause_binary = %q: must be an absolute path (or \"\")", p))
	}
	if c.Pod.StartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("pod.start_timeout = %q: must be positive", c.Pod.StartTimeout))
	}
	return config.Join(errs...)
}

// CheckHost checks that runsc.binary names an executable, and replaces a
// bare name by the absolute path found in PATH, and that pod.pause_binary,
// when set, is one.
func (c *Config) CheckHost() error {
	p, err := config.Executable("runsc.binary", c.Runsc.Binary)
	if err != nil {
		return err
	}
	c.Runsc.Binary = p
	if c.Pod.PauseBinary != "" {
		if _, err := config.Executable("pod.pause_binary", c.Pod.PauseBinary); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ daemon.Config      = (*Config)(nil)
	_ config.HostChecker = (*Config)(nil)
)
