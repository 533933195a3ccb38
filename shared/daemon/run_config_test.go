package daemon

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/config"
)

// hostCfg names an external binary, as the runc sandboxer's [runc] binary,
// and a duration key.
type hostCfg struct {
	config.Daemon
	Runc struct {
		Binary string `toml:"binary"`
	} `toml:"runc"`
	Pod struct {
		StopTimeout config.Duration `toml:"stop_timeout"`
	} `toml:"pod"`
	checked bool
}

func (c *hostCfg) Common() *config.Daemon { return &c.Daemon }
func (c *hostCfg) Validate() error        { return c.Daemon.Validate() }

func (c *hostCfg) CheckHost() error {
	c.checked = true
	p, err := config.Executable("runc.binary", c.Runc.Binary)
	c.Runc.Binary = p
	return err
}

var _ config.HostChecker = (*hostCfg)(nil)

func newHostCfg() *hostCfg { return &hostCfg{Daemon: config.DefaultDaemon("fake")} }

// hostSandboxer fails at Build: reaching it means the configuration passed.
func hostSandboxer(cfg *hostCfg) Sandboxer {
	return Sandboxer{Name: "fake", NewConfig: func() Config { return cfg }}
}

// writeConfig writes a config whose state dir is under a regular file, so
// that a daemon which gets past the configuration stops at once in serve.
func writeConfig(t *testing.T, text string) (path, blocker string) {
	t.Helper()
	dir := t.TempDir()
	blocker = filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "fake.toml")
	text = "dir = \"" + filepath.Join(blocker, "state") + "\"\nlisten = \"" + filepath.Join(dir, "fake.sock") + "\"\n" + text
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, blocker
}

// A daemon whose runc cannot be found must not start: the message names the
// key and where it looked.
func TestRunChecksTheHost(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	path, _ := writeConfig(t, "[runc]\nbinary = \"runc\"\n")
	cfg := newHostCfg()
	var out, errb bytes.Buffer
	err := run(hostSandboxer(cfg), []string{"--config", path}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), empty) {
		t.Errorf("runc missing: %v, want an error naming runc.binary and %s", err, empty)
	}

	missing := filepath.Join(empty, "sbin", "runc")
	path, _ = writeConfig(t, "[runc]\nbinary = \""+missing+"\"\n")
	err = run(hostSandboxer(newHostCfg()), []string{"--config", path}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), missing) {
		t.Errorf("runc path missing: %v, want an error naming runc.binary and %s", err, missing)
	}
}

func TestRunPassesAPresentBinary(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "runc"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	path, blocker := writeConfig(t, "[runc]\nbinary = \"runc\"\n")
	cfg := newHostCfg()
	var out, errb bytes.Buffer
	err := run(hostSandboxer(cfg), []string{"--config", path}, strings.NewReader(""), &out, &errb)
	// past the configuration, serve cannot make its state dir
	var pe *os.PathError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Path, blocker) {
		t.Fatalf("run = %v, want serve's error making its state dir", err)
	}
	if !cfg.checked || cfg.Runc.Binary != filepath.Join(bin, "runc") {
		t.Errorf("checked %v, binary %q", cfg.checked, cfg.Runc.Binary)
	}
}

// Deprecation warnings reach the daemon's log at start-up, naming the key.
func TestRunLogsConfigWarnings(t *testing.T) {
	var logs bytes.Buffer
	log.L.Logger.SetOutput(&logs)
	t.Cleanup(func() { log.L.Logger.SetOutput(os.Stderr) })
	t.Setenv("PATH", t.TempDir())
	path, _ := writeConfig(t, "[runc]\nbinary = \"runc\"\n[pod]\nstop_timeout = 30\n")
	var out, errb bytes.Buffer
	if err := run(hostSandboxer(newHostCfg()), []string{"--config", path}, strings.NewReader(""), &out, &errb); err == nil {
		t.Fatal("runc missing: want an error")
	}
	got := logs.String()
	for _, want := range []string{"level=warning", "pod.stop_timeout", `stop_timeout = \"30s\"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q does not contain %q", got, want)
		}
	}
}
