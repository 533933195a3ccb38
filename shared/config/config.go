package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
)

// Default locations, per sandboxer name.
const (
	DefaultRunDir   = "/run/magnetar"
	DefaultStateDir = "/var/lib/magnetar"
	DefaultConfDir  = "/etc/magnetar"
	// DefaultContainerdAddress is containerd's ttrpc socket, where events go.
	DefaultContainerdAddress = "/run/containerd/containerd.sock.ttrpc"
)

// Daemon holds the keys every sandboxer has, at the top level of its file.
type Daemon struct {
	// Listen is the Sandbox API (gRPC) socket containerd's proxy plugin dials.
	Listen string `toml:"listen"`
	// TaskSocket is the Task API (ttrpc) socket; default beside Listen.
	TaskSocket string `toml:"task_socket"`
	// Dir holds the persistent state of the sandboxes.
	Dir string `toml:"dir"`
	// ContainerdAddress is containerd's ttrpc socket, for events.
	ContainerdAddress string `toml:"containerd_address"`
	// LogLevel is one of trace, debug, info, warn, error.
	LogLevel string `toml:"log_level"`
}

// DefaultDaemon is the default of the common keys for the sandboxer name.
func DefaultDaemon(name string) Daemon {
	return Daemon{
		Listen:            filepath.Join(DefaultRunDir, name+".sock"),
		Dir:               filepath.Join(DefaultStateDir, name),
		ContainerdAddress: DefaultContainerdAddress,
		LogLevel:          "info",
	}
}

// Validate checks the common keys.
func (d *Daemon) Validate() error {
	var errs []error
	for _, p := range []struct{ key, v string }{{"listen", d.Listen}, {"dir", d.Dir}, {"containerd_address", d.ContainerdAddress}, {"task_socket", d.TaskSocket}} {
		if p.v == "" && p.key == "task_socket" {
			continue
		}
		if !filepath.IsAbs(p.v) {
			errs = append(errs, fmt.Errorf("%s = %q: must be an absolute path", p.key, p.v))
		}
	}
	for _, p := range []struct{ key, v string }{{"listen", d.Listen}, {"task_socket", d.TaskSocket}} {
		if len(p.v) > 107 {
			errs = append(errs, fmt.Errorf("%s = %q: a unix socket path is at most 107 bytes", p.key, p.v))
		}
	}
	if _, err := logrus.ParseLevel(d.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log_level = %q: want one of trace, debug, info, warn, error", d.LogLevel))
	}
	return join(errs)
}

// TaskSocketPath is the Task API socket, defaulting to "<name>-task.sock"
// beside the Sandbox API socket.
func (d *Daemon) TaskSocketPath(name string) string {
	if d.TaskSocket != "" {
		return d.TaskSocket
	}
	return filepath.Join(filepath.Dir(d.Listen), name+"-task.sock")
}

// Validator is a configuration that can check itself.
type Validator interface {
	Validate() error
}

// Load decodes the TOML file at path into cfg, which holds the defaults, then
// validates it. A missing file is an error only when required.
func Load(path string, required bool, cfg Validator) error {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !required:
		return cfg.Validate()
	case err != nil:
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := Decode(string(data), cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode decodes TOML text into cfg (over its current values), refusing
// unknown keys, then validates.
func Decode(text string, cfg Validator) error {
	md, err := toml.Decode(text, cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", strings.TrimSpace(pe.ErrorWithPosition()), errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		return fmt.Errorf("unknown key(s): %s: %w", strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func join(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Join combines validation errors into one message (nil when none).
func Join(errs ...error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return join(out)
}
