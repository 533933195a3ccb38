package runcsb

import (
	"fmt"
	"path/filepath"

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
	// Binary is the runc binary (a name is looked up in PATH).
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
	// StopTimeout bounds how long Stop waits for containers after SIGTERM, in seconds, when containerd gives none.
	StopTimeout int `toml:"stop_timeout"`
}

// DefaultConfig is the configuration with every default.
func DefaultConfig() *Config {
	return &Config{
		Daemon: config.DefaultDaemon(Name),
		Runc:   RuncConfig{Binary: "runc", Root: filepath.Join(config.DefaultRunDir, Name, "runc")},
		Pod:    PodConfig{ShmSize: 64 << 20, StopTimeout: 10},
	}
}

// Common returns the keys every sandboxer has.
func (c *Config) Common() *config.Daemon { return &c.Daemon }

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.Daemon.Validate())
	if c.Runc.Binary == "" {
		errs = append(errs, fmt.Errorf("runc.binary: must not be empty"))
	}
	if !filepath.IsAbs(c.Runc.Root) {
		errs = append(errs, fmt.Errorf("runc.root = %q: must be an absolute path", c.Runc.Root))
	}
	if c.Pod.ShmSize < 0 {
		errs = append(errs, fmt.Errorf("pod.shm_size = %d: must not be negative", c.Pod.ShmSize))
	}
	if c.Pod.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("pod.stop_timeout = %d: must not be negative", c.Pod.StopTimeout))
	}
	return config.Join(errs...)
}

var _ daemon.Config = (*Config)(nil)
