package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
	// DebugSocket, when set, is a unix socket (mode 0600) serving the
	// daemon's Go profiles (net/http/pprof). Off by default.
	DebugSocket string `toml:"debug_socket"`
	// UnstartedGrace is how long after a restart the daemon keeps a
	// sandbox that has never started before it shuts it down: what a
	// restart inside containerd's RunPodSandbox leaves, that containerd has
	// forgotten. "0" keeps them.
	UnstartedGrace Duration `toml:"unstarted_grace"`
	// ContainerdGRPCAddress is containerd's gRPC socket, where the daemon
	// asks which sandboxes containerd still holds (ForgottenCheck); "" is
	// ContainerdAddress without its ".ttrpc" suffix.
	ContainerdGRPCAddress string `toml:"containerd_grpc_address"`
	// ForgottenCheck is how often the daemon asks containerd whether it
	// still holds each sandbox; one it holds at no two checks in a row is
	// shut down (containerd removed its pod while the daemon could not
	// answer). "0" never asks.
	ForgottenCheck Duration `toml:"forgotten_check"`
}

// DefaultForgottenCheck is forgotten_check's default.
const DefaultForgottenCheck = Duration(5 * time.Minute)

// ContainerdGRPC is containerd's gRPC socket: ContainerdGRPCAddress, or
// ContainerdAddress without its ".ttrpc" suffix ("" when it has none).
func (d *Daemon) ContainerdGRPC() string {
	if d.ContainerdGRPCAddress != "" {
		return d.ContainerdGRPCAddress
	}
	if a, ok := strings.CutSuffix(d.ContainerdAddress, ".ttrpc"); ok && a != "" {
		return a
	}
	return ""
}

// DefaultUnstartedGrace is unstarted_grace's default: well past any
// RunPodSandbox (the kubelet gives a CRI call 2 minutes).
const DefaultUnstartedGrace = Duration(5 * time.Minute)

// DefaultDaemon is the default of the common keys for the sandboxer name.
func DefaultDaemon(name string) Daemon {
	return Daemon{
		Listen:            filepath.Join(DefaultRunDir, name+".sock"),
		Dir:               filepath.Join(DefaultStateDir, name),
		ContainerdAddress: DefaultContainerdAddress,
		LogLevel:          "info",
		UnstartedGrace:    DefaultUnstartedGrace,
		ForgottenCheck:    DefaultForgottenCheck,
	}
}

// Validate checks the common keys.
func (d *Daemon) Validate() error {
	var errs []error
	for _, p := range []struct{ key, v string }{{"listen", d.Listen}, {"dir", d.Dir}, {"containerd_address", d.ContainerdAddress}, {"task_socket", d.TaskSocket}, {"debug_socket", d.DebugSocket}, {"containerd_grpc_address", d.ContainerdGRPCAddress}} {
		if p.v == "" && (p.key == "task_socket" || p.key == "debug_socket" || p.key == "containerd_grpc_address") {
			continue
		}
		if !filepath.IsAbs(p.v) {
			errs = append(errs, fmt.Errorf("%s = %q: must be an absolute path", p.key, p.v))
		}
	}
	for _, p := range []struct{ key, v string }{{"listen", d.Listen}, {"task_socket", d.TaskSocket}, {"debug_socket", d.DebugSocket}} {
		if len(p.v) > 107 {
			errs = append(errs, fmt.Errorf("%s = %q: a unix socket path is at most 107 bytes", p.key, p.v))
		}
	}
	if d.UnstartedGrace < 0 {
		errs = append(errs, fmt.Errorf("unstarted_grace = %q: must not be negative", d.UnstartedGrace))
	}
	if d.ForgottenCheck < 0 {
		errs = append(errs, fmt.Errorf("forgotten_check = %q: must not be negative", d.ForgottenCheck))
	}
	if d.ForgottenCheck > 0 && d.ContainerdGRPC() == "" {
		errs = append(errs, fmt.Errorf("containerd_grpc_address: containerd_address = %q does not end in .ttrpc, so containerd's gRPC socket is not known: set containerd_grpc_address, or forgotten_check = \"0\"", d.ContainerdAddress))
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

// Warning is a problem of a configuration file that does not stop the
// daemon, such as the deprecated form of a key. Load returns the warnings
// and the daemon logs them once its logging is set up.
type Warning struct {
	// Key is the key, dotted as in errors: "pod.stop_timeout".
	Key string
	// Msg says what is deprecated and what to write instead.
	Msg string
}

// String is the warning on one line: the key, then the message.
func (w Warning) String() string { return w.Key + ": " + w.Msg }

// Migrator is a configuration that still reads deprecated keys. Decode
// calls Migrate after decoding and before Validate; defined reports whether
// the file sets a key (as toml.MetaData.IsDefined: "cache", "keep").
// Migrate moves each deprecated value to its replacement, returning a
// warning for each, or an error that names the keys (both forms set).
type Migrator interface {
	Migrate(defined func(key ...string) bool) ([]Warning, error)
}

// Load decodes the TOML file at path into cfg, which holds the defaults, then
// validates it. A missing file is an error only when required. The warnings
// (deprecated forms) are for the caller to log.
func Load(path string, required bool, cfg Validator) ([]Warning, error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !required:
		return nil, cfg.Validate()
	case err != nil:
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	warns, err := Decode(string(data), cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return warns, nil
}

// Decode decodes TOML text into cfg (over its current values), refusing
// unknown keys, migrates deprecated keys (when cfg is a Migrator), then
// validates. It returns a warning for each deprecated form in the text.
func Decode(text string, cfg Validator) ([]Warning, error) {
	md, err := toml.Decode(text, cfg)
	if err != nil {
		var pe toml.ParseError
		switch {
		case errors.As(err, &pe) && len(md.Keys()) > 0:
			// the text parsed (toml.Decode returns its keys only then) but
			// a value's own decoding refused it (a Duration): name the key
			// as the decoder's type errors do
			return nil, fmt.Errorf("%s: %w", pe.Error(), errdefs.ErrInvalidArgument)
		case errors.As(err, &pe):
			return nil, fmt.Errorf("%s: %w", withPosition(pe), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("unknown key(s): %s: %w", strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
	}
	warns := bareSeconds(md, cfg)
	if m, ok := cfg.(Migrator); ok {
		w, err := m.Migrate(md.IsDefined)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		warns = append(warns, w...)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return warns, nil
}

// withPosition is a parse error with the line it is on shown under it, or
// its one-line message ("toml: line N: ...") where the toml package cannot
// show the line: v1.6.0's ErrorWithPosition panics on some texts (a quote
// then "\r\n", found by FuzzConfig), and a daemon must not panic on its
// configuration file.
func withPosition(pe toml.ParseError) (s string) {
	defer func() {
		if recover() != nil {
			s = pe.Error()
		}
	}()
	return strings.TrimSpace(pe.ErrorWithPosition())
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
