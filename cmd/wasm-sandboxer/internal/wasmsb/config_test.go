package wasmsb

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/config/configtest"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

func TestCacheKeepIsADuration(t *testing.T) {
	if got := time.Duration(DefaultConfig().Cache.Keep); got != 5*time.Minute {
		t.Errorf("default cache.keep %v, want 5m", got)
	}
	c := DefaultConfig("wasmtime", "wazero")
	warns, err := config.Decode("[cache]\nkeep = \"90s\"\n", c)
	if err != nil || len(warns) > 0 || time.Duration(c.Cache.Keep) != 90*time.Second {
		t.Errorf("keep = \"90s\": %v %v %v", c.Cache.Keep, warns, err)
	}
	c = DefaultConfig("wasmtime", "wazero")
	warns, err = config.Decode("[cache]\nkeep = 0\n", c)
	if err != nil || len(warns) != 1 || warns[0].Key != "cache.keep" || c.Cache.Keep != 0 {
		t.Errorf("keep = 0: %v %v %v", c.Cache.Keep, warns, err)
	}
}

// keep_seconds is read for one release, with a warning that names it and
// what to write instead.
func TestCacheKeepSecondsIsADeprecatedAlias(t *testing.T) {
	c := DefaultConfig("wasmtime", "wazero")
	warns, err := config.Decode("[cache]\nkeep_seconds = 30\n", c)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Cache.Keep) != 30*time.Second {
		t.Errorf("keep_seconds = 30: keep %v, want 30s", c.Cache.Keep)
	}
	if len(warns) != 1 || warns[0].Key != "cache.keep_seconds" || !strings.Contains(warns[0].Msg, `keep = "30s"`) {
		t.Errorf("keep_seconds = 30: warnings %v", warns)
	}
	c = DefaultConfig("wasmtime", "wazero")
	if _, err := config.Decode("[cache]\nkeep_seconds = 0\n", c); err != nil || c.Cache.Keep != 0 {
		t.Errorf("keep_seconds = 0: %v %v", c.Cache.Keep, err)
	}
	for _, tc := range []struct{ text, want string }{
		{"[cache]\nkeep = \"1m\"\nkeep_seconds = 60\n", "cache.keep_seconds"},
		{"[cache]\nkeep_seconds = 60\nkeep = \"1m\"\n", "cache.keep"},
		{"[cache]\nkeep_seconds = -1\n", "cache.keep_seconds"},
		{"[cache]\nkeep_seconds = 99999999999999\n", "cache.keep_seconds"},
		{"[cache]\nkeep_seconds = \"1m\"\n", "cache.keep_seconds"},
		{"[cache]\nkeep = \"-1m\"\n", "cache.keep"},
	} {
		_, err := config.Decode(tc.text, DefaultConfig("wasmtime", "wazero"))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want InvalidArgument naming %s", tc.text, err, tc.want)
		}
	}
	c = DefaultConfig("wasmtime", "wazero")
	c.Cache.Keep = config.Duration(-time.Second)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cache.keep") {
		t.Errorf("negative keep: %v", err)
	}
}

// build hands cache.keep to the keeper of ended containers' modules.
func TestBuildKeepsModulesForCacheKeep(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig("wasmtime", "wazero")
	cfg.Dir = dir
	cfg.Cache.Keep = config.Duration(7 * time.Second)
	env := &daemon.Env{Life: t.Context(), Name: Name, Dir: dir, TaskAddress: "ttrpc+unix:///x/task.sock"}
	_, be, err := build(env, cfg, map[string]wasi.New{"wasmtime": newFake, "wazero": newFake})
	if err != nil {
		t.Fatal(err)
	}
	if got := be.(*backend).keep.ttl; got != 7*time.Second {
		t.Errorf("keeper ttl %v, want cache.keep = 7s", got)
	}
}

// The shipped wasm.toml shows every default.
func TestDeployedConfigIsTheDefault(t *testing.T) {
	configtest.ShippedIsDefault(t, "../../../../deploy/etc/magnetar/wasm.toml", func() *Config { return DefaultConfig("wasmtime", "wazero") })
}

// FuzzConfig: any wasm.toml is decoded to a configuration that validates and
// re-encodes to itself, or refused with an error naming the key or line.
func FuzzConfig(f *testing.F) {
	configtest.Fuzz(f, "../../../../deploy/etc/magnetar/wasm.toml", func() *Config { return DefaultConfig("wasmtime", "wazero") },
		"log_level = 3\n", "[[x]]\n")
}
