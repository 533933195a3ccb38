package gvisorsb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/config/configtest"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Runsc.Platform != "systrap" || c.Runsc.Monitor != "control" || c.StopTimeout() != 10*time.Second || c.Dir != "/var/lib/magnetar/gvisor" {
		t.Errorf("defaults %+v", c)
	}
}

// Every bad value is refused with a message naming its key.
func TestConfigBadValues(t *testing.T) {
	for text, key := range map[string]string{
		"[runsc]\nplatform = \"kvm2\"\n":                  "runsc.platform",
		"[runsc]\nmonitor = \"poll\"\n":                   "runsc.monitor",
		"[runsc]\nbinary = \"bin/runsc\"\n":               "runsc.binary",
		"[runsc]\nbinary = \"\"\n":                        "runsc.binary",
		"[runsc]\nflags = [\"debug\"]\n":                  "runsc.flags[0]",
		"[runsc]\nflags = [\"--debug\", \"--root=/x\"]\n": "runsc.flags[1]",
		"[runsc]\nflags = [\"--network=host\"]\n":         "runsc.flags[0]",
		"[runsc]\nflags = [\"--platform\"]\n":             "runsc.flags[0]",
		"[pod]\ncgroup_parent = \"relative\"\n":           "pod.cgroup_parent",
		"[pod]\ncgroup_parent = \"/\"\n":                  "pod.cgroup_parent",
		"[pod]\nstop_timeout = \"-1s\"\n":                 "pod.stop_timeout",
		"[pod]\nstart_timeout = \"0s\"\n":                 "pod.start_timeout",
		"[pod]\npause_binary = \"podinit\"\n":             "pod.pause_binary",
		"[runsc]\nplatfrom = \"kvm\"\n":                   "platfrom",
	} {
		if _, err := config.Decode(text, DefaultConfig()); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Decode(%q) = %v, want an error naming %s", text, err, key)
		}
	}
	c := DefaultConfig()
	if _, err := config.Decode("[runsc]\nplatform = \"ptrace\"\nflags = [\"--debug\", \"--overlay2=root:memory\"]\nmonitor = \"processes\"\n", c); err != nil {
		t.Fatal(err)
	}
	if c.Runsc.Platform != "ptrace" || len(c.Runsc.Flags) != 2 || c.Runsc.Monitor != "processes" {
		t.Errorf("decoded %+v", c.Runsc)
	}
}

// A runsc that cannot be found stops the daemon at start-up, naming the
// key; a bare name is resolved to the path found.
func TestCheckHost(t *testing.T) {
	empty, bin := t.TempDir(), t.TempDir()
	t.Setenv("PATH", empty)
	c := DefaultConfig()
	c.Runsc.Binary = "runsc"
	if err := c.CheckHost(); err == nil || !strings.Contains(err.Error(), "runsc.binary") {
		t.Fatalf("CheckHost without runsc: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "runsc"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", empty+":"+bin)
	c = DefaultConfig()
	c.Runsc.Binary, c.Pod.PauseBinary = "runsc", ""
	if err := c.CheckHost(); err != nil || c.Runsc.Binary != filepath.Join(bin, "runsc") {
		t.Fatalf("CheckHost: %v, binary %q", err, c.Runsc.Binary)
	}
	c.Pod.PauseBinary = filepath.Join(empty, "magnetar-podinit")
	if err := c.CheckHost(); err == nil || !strings.Contains(err.Error(), "pod.pause_binary") {
		t.Fatalf("CheckHost with a missing pause binary: %v", err)
	}
}

// The shipped gvisor.toml shows every default.
func TestDeployedConfigIsTheDefault(t *testing.T) {
	configtest.ShippedIsDefault(t, "../../../../deploy/etc/magnetar/gvisor.toml", DefaultConfig)
}

// FuzzConfig: any gvisor.toml is decoded to a configuration that validates and
// re-encodes to itself, or refused with an error naming the key or line.
func FuzzConfig(f *testing.F) {
	configtest.Fuzz(f, "../../../../deploy/etc/magnetar/gvisor.toml", DefaultConfig,
		"dir = \"rel\"\n", "a.b.c = 1\n")
}
