package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type durConfig struct {
	Daemon
	Pod struct {
		StopTimeout Duration `toml:"stop_timeout"`
	} `toml:"pod"`
	Timeouts map[string]Duration `toml:"timeouts"`
}

func (c *durConfig) Validate() error { return c.Daemon.Validate() }

func newDur() *durConfig {
	c := &durConfig{Daemon: DefaultDaemon("runc")}
	c.Pod.StopTimeout = Duration(10 * time.Second)
	return c
}

func TestDurationDecode(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
	}{
		{"[pod]\nstop_timeout = \"10s\"\n", 10 * time.Second},
		{"[pod]\nstop_timeout = \"5m\"\n", 5 * time.Minute},
		{"[pod]\nstop_timeout = \"1h30m\"\n", 90 * time.Minute},
		{"[pod]\nstop_timeout = \"250ms\"\n", 250 * time.Millisecond},
		{"[pod]\nstop_timeout = \"0s\"\n", 0},
		{"", 10 * time.Second},
	} {
		c := newDur()
		warns, err := Decode(tc.text, c)
		if err != nil || len(warns) > 0 {
			t.Errorf("Decode(%q) = %v, %v", tc.text, warns, err)
			continue
		}
		if got := time.Duration(c.Pod.StopTimeout); got != tc.want {
			t.Errorf("Decode(%q): %v, want %v", tc.text, got, tc.want)
		}
	}
}

// A bare integer is the keys' former form (seconds): read for one release,
// with a warning that names the key and what to write instead.
func TestDurationBareSecondsWarns(t *testing.T) {
	c := newDur()
	warns, err := Decode("[pod]\nstop_timeout = 300\n[timeouts]\nboot = \"1m\"\nconnect = 5\n", c)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(c.Pod.StopTimeout); got != 300*time.Second {
		t.Errorf("stop_timeout = 300: %v, want 5m", got)
	}
	if got := time.Duration(c.Timeouts["connect"]); got != 5*time.Second {
		t.Errorf("timeouts.connect = 5: %v, want 5s", got)
	}
	if len(warns) != 2 {
		t.Fatalf("warnings %v, want one for pod.stop_timeout and one for timeouts.connect", warns)
	}
	for i, want := range []struct{ key, replacement string }{{"pod.stop_timeout", `stop_timeout = "5m"`}, {"timeouts.connect", `connect = "5s"`}} {
		w := warns[i]
		if w.Key != want.key || !strings.Contains(w.Msg, want.replacement) || !strings.Contains(w.Msg, "deprecated") {
			t.Errorf("warning %d = %+v, want key %s and %s", i, w, want.key, want.replacement)
		}
		if !strings.Contains(w.String(), want.key) {
			t.Errorf("warning %d String() = %q does not name the key", i, w.String())
		}
	}
}

func TestLoadReturnsWarnings(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("[pod]\nstop_timeout = 20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newDur()
	warns, err := Load(p, true, c)
	if err != nil || len(warns) != 1 || warns[0].Key != "pod.stop_timeout" || time.Duration(c.Pod.StopTimeout) != 20*time.Second {
		t.Errorf("Load: %v %v %v", warns, err, c.Pod.StopTimeout)
	}
}

func TestDurationErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[pod]\nstop_timeout = \"10 seconds\"\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = \"10\"\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = \"-1s\"\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = -5\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = 1.5\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = true\n", "pod.stop_timeout"},
		{"[pod]\nstop_timeout = 99999999999999\n", "pod.stop_timeout"},
		{"[timeouts]\nboot = \"-2m\"\n", "timeouts.boot"},
	} {
		_, err := Decode(tc.text, newDur())
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want InvalidArgument naming %q", tc.text, err, tc.want)
		}
	}
	_, err := Decode("[pod]\nstop_timeout = \"-1s\"\n", newDur())
	if err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative: %v", err)
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 10 * time.Second: "10s", 5 * time.Minute: "5m", time.Hour: "1h", 90 * time.Second: "1m30s",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", -time.Minute: "-1m",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
		text, err := Duration(d).MarshalText()
		if err != nil || string(text) != want {
			t.Errorf("MarshalText(%v) = %q, %v", d, text, err)
		}
		var back Duration
		err = back.UnmarshalText(text)
		if d >= 0 && (err != nil || time.Duration(back) != d) || d < 0 && err == nil {
			t.Errorf("UnmarshalText(%q) = %v, %v", text, time.Duration(back), err)
		}
	}
}

// migrConfig has a deprecated alias, moved by Migrate.
type migrConfig struct {
	Daemon
	Cache struct {
		Keep        Duration `toml:"keep"`
		KeepSeconds *int64   `toml:"keep_seconds"`
	} `toml:"cache"`
}

func (c *migrConfig) Validate() error { return c.Daemon.Validate() }

func (c *migrConfig) Migrate(defined func(key ...string) bool) ([]Warning, error) {
	if c.Cache.KeepSeconds == nil {
		return nil, nil
	}
	if defined("cache", "keep") {
		return nil, errdefs.ErrConflict
	}
	c.Cache.Keep = Duration(time.Duration(*c.Cache.KeepSeconds) * time.Second)
	c.Cache.KeepSeconds = nil
	return []Warning{{Key: "cache.keep_seconds", Msg: "deprecated"}}, nil
}

func TestMigrator(t *testing.T) {
	c := &migrConfig{Daemon: DefaultDaemon("wasm")}
	warns, err := Decode("[cache]\nkeep_seconds = 7\n", c)
	if err != nil || len(warns) != 1 || warns[0].Key != "cache.keep_seconds" || time.Duration(c.Cache.Keep) != 7*time.Second {
		t.Errorf("keep_seconds = 7: %v %v %v", warns, err, c.Cache.Keep)
	}
	c = &migrConfig{Daemon: DefaultDaemon("wasm")}
	warns, err = Decode("[cache]\nkeep = 3\n", c)
	if err != nil || len(warns) != 1 || warns[0].Key != "cache.keep" {
		t.Errorf("keep = 3: %v %v", warns, err)
	}
	_, err = Decode("[cache]\nkeep = \"1m\"\nkeep_seconds = 7\n", &migrConfig{Daemon: DefaultDaemon("wasm")})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("both set: %v, want InvalidArgument", err)
	}
}
