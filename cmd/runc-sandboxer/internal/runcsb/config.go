package runcsb

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// Name is the sandboxer's short name.
const Name = "runc"

// Config is the runc sandboxer's configuration (/etc/magnetar/runc.toml).
type Config struct {
	config.Daemon
	Runc RuncConfig `toml:"runc"`
	Pod  PodConfig  `toml:"pod"`
}

// RuncConfig is how containers are run.
type RuncConfig struct {
	// Binary is the runc binary: a name looked up in PATH, or an absolute
	// path. CheckHost replaces it by the absolute path it checked, so that
	// every runc call uses the binary checked at start-up (not one installed
	// later in an earlier PATH directory), and so does a shim-style delete,
	// which containerd runs with its own PATH and which reads the binary
	// from the bundle.
	Binary string `toml:"binary"`
	// Root is runc's state root (--root).
	Root string `toml:"root"`
	// SystemdCgroup uses the systemd cgroup driver (--systemd-cgroup).
	SystemdCgroup bool `toml:"systemd_cgroup"`
}

// PodConfig holds pod defaults.
type PodConfig struct {
	// ShmSize is the size of each pod's /dev/shm tmpfs in bytes.
	ShmSize int64 `toml:"shm_size"`
	// StopTimeout is the grace period (SIGTERM, then SIGKILL) of the
	// containers still running when Controller.Stop gives no timeout.
	// containerd's CRI stops every container with its own grace period
	// first, so this matters to other clients (`ctr sandbox stop`).
	StopTimeout config.Duration `toml:"stop_timeout"`
}

// DefaultConfig is the configuration with every default.
func DefaultConfig() *Config {
	return &Config{
		Daemon: config.DefaultDaemon(Name),
		Runc:   RuncConfig{Binary: "runc", Root: filepath.Join(config.DefaultRunDir, Name, "runc")},
		Pod:    PodConfig{ShmSize: 64 << 20, StopTimeout: config.Duration(10 * time.Second)},
	}
}

// StopTimeout is pod.stop_timeout (daemon.StopTimeouter).
func (c *Config) StopTimeout() time.Duration { return time.Duration(c.Pod.StopTimeout) }

// Common returns the keys every sandboxer has.
func (c *Config) Common() *config.Daemon { return &c.Daemon }

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.Daemon.Validate())
	switch b := c.Runc.Binary; {
	case b == "":
		errs = append(errs, fmt.Errorf("runc.binary: must not be empty"))
	case strings.Contains(b, "/") && !filepath.IsAbs(b):
		errs = append(errs, fmt.Errorf("runc.binary = %q: want a name looked up in PATH or an absolute path", b))
	}
	if !filepath.IsAbs(c.Runc.Root) {
		errs = append(errs, fmt.Errorf("runc.root = %q: must be an absolute path", c.Runc.Root))
	}
	if c.Pod.ShmSize < 0 {
		errs = append(errs, fmt.Errorf("pod.shm_size = %d: must not be negative", c.Pod.ShmSize))
	}
	if c.Pod.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("pod.stop_timeout = %q: must not be negative", c.Pod.StopTimeout))
	}
	return config.Join(errs...)
}

// CheckHost checks that runc.binary names an executable, and replaces a
// bare name by the absolute path found in PATH.
func (c *Config) CheckHost() error {
	p, err := config.Executable("runc.binary", c.Runc.Binary)
	if err != nil {
		return err
	}
	c.Runc.Binary = p
	return nil
}

var (
	_ daemon.Config      = (*Config)(nil)
	_ config.HostChecker = (*Config)(nil)
)
