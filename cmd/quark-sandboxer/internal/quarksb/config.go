package quarksb

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// Name is the sandboxer's short name.
const Name = "quark"

// Handler is the runtime handler (containerd proxy plugin) of Quark pods.
const Handler = "magnetar-quark"

// DefaultQuarkConfig is where Quark reads its own configuration.
const DefaultQuarkConfig = "/etc/quark/config.json"

// Config is the quark sandboxer's configuration (/etc/magnetar/quark.toml).
type Config struct {
	config.Daemon
	// RunDir holds one short directory per running pod: Quark's task
	// socket, its pid file and output (unix socket paths are bounded to
	// 107 bytes).
	RunDir string    `toml:"run_dir"`
	Quark  QuarkConf `toml:"quark"`
	Pod    PodConf   `toml:"pod"`
}

// QuarkConf locates Quark.
type QuarkConf struct {
	// Binary is Quark's qvisor binary, `quark` (a name is looked up in
	// PATH).
	Binary string `toml:"binary"`
	// ConfigFile is Quark's own configuration, checked at start-up: a
	// sandboxer's pods need "Sandboxed": true and "ShimMode": false. ""
	// skips the check.
	ConfigFile string `toml:"config_file"`
	// StartTimeout bounds a pod's start: `quark sandbox` daemonizing, then
	// its task socket answering.
	StartTimeout config.Duration `toml:"start_timeout"`
}

// PodConf holds pod defaults.
type PodConf struct {
	// StopTimeout is the grace period of the containers still running when
	// Controller.Stop gives no timeout.
	StopTimeout config.Duration `toml:"stop_timeout"`
}

// DefaultConfig is the configuration with every default.
func DefaultConfig() *Config {
	return &Config{
		Daemon: config.DefaultDaemon(Name),
		RunDir: filepath.Join(config.DefaultRunDir, Name),
		Quark:  QuarkConf{Binary: "quark", ConfigFile: DefaultQuarkConfig, StartTimeout: config.Duration(30 * time.Second)},
		Pod:    PodConf{StopTimeout: config.Duration(10 * time.Second)},
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
	errs = append(errs, config.CheckRunDir(c.RunDir, taskSocketName, "the pods' task sockets"))
	if c.Quark.Binary == "" {
		errs = append(errs, errors.New("quark.binary: must not be empty"))
	}
	if c.Quark.ConfigFile != "" && !filepath.IsAbs(c.Quark.ConfigFile) {
		errs = append(errs, fmt.Errorf("quark.config_file = %q: must be an absolute path (or \"\" to skip the check)", c.Quark.ConfigFile))
	}
	if c.Quark.StartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("quark.start_timeout = %q: must be positive", c.Quark.StartTimeout))
	}
	if c.Pod.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("pod.stop_timeout = %q: must not be negative", c.Pod.StopTimeout))
	}
	return config.Join(errs...)
}

// CheckHost checks Quark's binary (resolved to its absolute path) and
// Quark's own configuration.
func (c *Config) CheckHost() error {
	var errs []error
	var err error
	if c.Quark.Binary, err = config.Executable("quark.binary", c.Quark.Binary); err != nil {
		errs = append(errs, fmt.Errorf("%w (Quark Containers' qvisor: see the README, \"Quark pods\")", err))
	}
	if c.Quark.ConfigFile != "" {
		if err := checkQuarkConfig(c.Quark.ConfigFile); err != nil {
			errs = append(errs, err)
		}
	}
	return config.Join(errs...)
}

// checkQuarkConfig checks Quark's own configuration file: a sandboxer
// drives Quark in sandboxed mode, which it selects by these two keys.
func checkQuarkConfig(path string) error {
	key := "quark.config_file"
	if err := config.ExistingFile(key, path); err != nil {
		return fmt.Errorf("%w (Quark's configuration, written by its `make install`; or set %s = \"\" to skip this check)", err, key)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s = %q: %w", key, path, err)
	}
	var qc map[string]any
	if err := json.Unmarshal(data, &qc); err != nil {
		return fmt.Errorf("%s = %q: not JSON: %w", key, path, err)
	}
	var errs []error
	if v, ok := qc["Sandboxed"].(bool); !ok || !v {
		errs = append(errs, fmt.Errorf("%s = %q: \"Sandboxed\" is %v, want true (Quark run by a sandboxer)", key, path, qc["Sandboxed"]))
	}
	if v, ok := qc["ShimMode"]; ok && v != false {
		errs = append(errs, fmt.Errorf("%s = %q: \"ShimMode\" is %v, want false (with it, quark ignores its command line and runs as a containerd shim)", key, path, v))
	}
	return config.Join(errs...)
}

var (
	_ daemon.Config        = (*Config)(nil)
	_ daemon.StopTimeouter = (*Config)(nil)
	_ config.HostChecker   = (*Config)(nil)
)
