package quarksb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/config/configtest"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestConfigErrors: every bad value is named by its key.
func TestConfigErrors(t *testing.T) {
	for key, text := range map[string]string{
		"run_dir":             `run_dir = "relative"`,
		"quark.binary":        "[quark]\nbinary = \"\"",
		"quark.config_file":   "[quark]\nconfig_file = \"etc/quark.json\"",
		"quark.start_timeout": "[quark]\nstart_timeout = \"0s\"",
		"pod.stop_timeout":    "[pod]\nstop_timeout = \"-1s\"",
	} {
		cfg := DefaultConfig()
		_, err := config.Decode(text, cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
	cfg := DefaultConfig()
	cfg.RunDir = "/" + strings.Repeat("r", 90)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("a long run_dir: %v", err)
	}
}

// TestCheckHost: a missing quark names quark.binary; Quark's own
// configuration must select its sandboxed mode.
func TestCheckHost(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg := DefaultConfig()
	cfg.Quark.ConfigFile = ""
	err := cfg.CheckHost()
	if err == nil || !strings.Contains(err.Error(), `quark.binary = "quark": not found in PATH`) {
		t.Fatalf("no quark in PATH: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "quark")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	qc := filepath.Join(dir, "config.json")
	for text, want := range map[string]string{
		`{"Sandboxed": true, "ShimMode": false, "UringIO": true}`: "",
		`{"Sandboxed": true}`:                     "",
		`{"Sandboxed": false, "ShimMode": false}`: `"Sandboxed" is false, want true`,
		`{"Sandboxed": true, "ShimMode": true}`:   `"ShimMode" is true, want false`,
		`{"ShimMode": false}`:                     `"Sandboxed" is <nil>, want true`,
		`not json`:                                "not JSON",
	} {
		if err := os.WriteFile(qc, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Quark.Binary, cfg.Quark.ConfigFile = bin, qc
		err := cfg.CheckHost()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", text, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "quark.config_file")):
			t.Errorf("%s: %v, want %q", text, err, want)
		}
	}
	cfg = DefaultConfig()
	cfg.Quark.Binary, cfg.Quark.ConfigFile = bin, filepath.Join(dir, "missing.json")
	if err := cfg.CheckHost(); err == nil || !strings.Contains(err.Error(), "quark.config_file") {
		t.Errorf("a missing Quark config: %v", err)
	}
}

// TestShippedConfig: deploy/etc/magnetar/quark.toml shows every default.
func TestShippedConfig(t *testing.T) {
	configtest.ShippedIsDefault(t, "../../../../deploy/etc/magnetar/quark.toml", DefaultConfig)
}

// FuzzConfig: any quark.toml is decoded to a configuration that validates and
// re-encodes to itself, or refused with an error naming the key or line.
func FuzzConfig(f *testing.F) {
	configtest.Fuzz(f, "../../../../deploy/etc/magnetar/quark.toml", DefaultConfig,
		"log_level = \"debug\"\n", "x = [1, 2\n")
}
