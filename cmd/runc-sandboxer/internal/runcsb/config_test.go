package runcsb

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/config/configtest"
)

func TestStopTimeoutIsADuration(t *testing.T) {
	if got := time.Duration(DefaultConfig().Pod.StopTimeout); got != 10*time.Second {
		t.Errorf("default stop_timeout %v, want 10s", got)
	}
	c := DefaultConfig()
	warns, err := config.Decode("[pod]\nstop_timeout = \"1m30s\"\n", c)
	if err != nil || len(warns) > 0 || time.Duration(c.Pod.StopTimeout) != 90*time.Second {
		t.Errorf("stop_timeout = \"1m30s\": %v, %v, %v", c.Pod.StopTimeout, warns, err)
	}
	// the former form: seconds, with a warning naming the key and the new form
	c = DefaultConfig()
	warns, err = config.Decode("[pod]\nstop_timeout = 15\n", c)
	if err != nil || time.Duration(c.Pod.StopTimeout) != 15*time.Second {
		t.Fatalf("stop_timeout = 15: %v, %v", c.Pod.StopTimeout, err)
	}
	if len(warns) != 1 || warns[0].Key != "pod.stop_timeout" || !strings.Contains(warns[0].Msg, `stop_timeout = "15s"`) {
		t.Errorf("stop_timeout = 15: warnings %v", warns)
	}
	for _, text := range []string{"[pod]\nstop_timeout = \"-1s\"\n", "[pod]\nstop_timeout = -1\n", "[pod]\nstop_timeout = \"soon\"\n"} {
		if _, err := config.Decode(text, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "pod.stop_timeout") {
			t.Errorf("Decode(%q) = %v, want an error naming pod.stop_timeout", text, err)
		}
	}
	c = DefaultConfig()
	c.Pod.StopTimeout = config.Duration(-time.Second)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pod.stop_timeout") {
		t.Errorf("negative stop_timeout: %v", err)
	}
}

// Validate checks values only: it must pass on a host without runc.
func TestValidateNeedsNoRunc(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	c := DefaultConfig()
	if _, err := config.Decode("[runc]\nbinary = \"runc\"\n", c); err != nil {
		t.Errorf("Validate looked for runc: %v", err)
	}
	if _, err := config.Decode("[runc]\nbinary = \"/nonexistent/runc\"\n", DefaultConfig()); err != nil {
		t.Errorf("Validate looked for runc: %v", err)
	}
	if _, err := config.Decode("[runc]\nbinary = \"bin/runc\"\n", DefaultConfig()); err == nil || !strings.Contains(err.Error(), "runc.binary") {
		t.Errorf("a relative path: %v, want an error naming runc.binary", err)
	}
}

func TestCheckHostFindsRunc(t *testing.T) {
	empty, bin := t.TempDir(), t.TempDir()
	t.Setenv("PATH", empty)
	c := DefaultConfig()
	err := c.CheckHost()
	if err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), empty) {
		t.Errorf("runc not in PATH: %v, want an error naming runc.binary and %s", err, empty)
	}
	c.Runc.Binary = filepath.Join(bin, "runc")
	if err := c.CheckHost(); err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), c.Runc.Binary) {
		t.Errorf("missing runc path: %v", err)
	}

	runc := filepath.Join(bin, "runc")
	if err := os.WriteFile(runc, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", empty+string(filepath.ListSeparator)+bin)
	c = DefaultConfig()
	if err := c.CheckHost(); err != nil {
		t.Fatal(err)
	}
	// the path found is what every runc call (and a shim-style delete) uses
	if c.Runc.Binary != runc {
		t.Errorf("runc.binary resolved to %q, want %s", c.Runc.Binary, runc)
	}
	var _ config.HostChecker = c
}

// The shipped runc.toml shows every default.
func TestDeployedConfigIsTheDefault(t *testing.T) {
	configtest.ShippedIsDefault(t, "../../../../deploy/etc/magnetar/runc.toml", DefaultConfig)
}

// TestRuntimeFeatures: the handler declares what its runc reports, less
// what a pod of the sandboxer cannot have.
func TestRuntimeFeatures(t *testing.T) {
	runc := filepath.Join(t.TempDir(), "runc")
	script := "#!/bin/sh\n[ \"$1\" = features ] || exit 1\n" +
		`echo '{"ociVersionMin":"1.0.0","ociVersionMax":"1.3.0","mountOptions":["ro","rro"],"linux":{"namespaces":["ipc","user","uts"],"mountExtensions":{"idmap":{"enabled":true}}}}'` + "\n"
	if err := os.WriteFile(runc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Runc.Binary = runc
	f, err := runtimeFeatures(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.MountOptions, "rro") || f.Linux.MountExtensions.IDMap == nil {
		t.Errorf("runc's features lost: %+v", f)
	}
	for _, ns := range unsupportedNamespaces {
		if slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("namespace %s declared: %v", ns, f.Linux.Namespaces)
		}
	}
	c.Runc.Binary = filepath.Join(t.TempDir(), "no-runc")
	if _, err := runtimeFeatures(context.Background(), c); err == nil || !strings.Contains(err.Error(), "runc.binary") {
		t.Errorf("missing runc: %v", err)
	}
}

// FuzzConfig: any runc.toml is decoded to a configuration that validates and
// re-encodes to itself, or refused with an error naming the key or line.
func FuzzConfig(f *testing.F) {
	configtest.Fuzz(f, "../../../../deploy/etc/magnetar/runc.toml", DefaultConfig,
		"log_level = \"loud\"\n", "[runc]\nbinary = \"\"\n", "bogus = 1\n", "listen = \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n")
}
