package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

type testConfig struct {
	Daemon
	Runc struct {
		Binary string `toml:"binary"`
		Root   string `toml:"root"`
	} `toml:"runc"`
}

func (c *testConfig) Validate() error {
	var err error
	if c.Runc.Binary == "" {
		err = fmt.Errorf("runc.binary: must not be empty")
	}
	return Join(c.Daemon.Validate(), err)
}

func newTest() *testConfig {
	c := &testConfig{Daemon: DefaultDaemon("runc")}
	c.Runc.Binary = "runc"
	return c
}

func TestDefaultsAndOverride(t *testing.T) {
	c := newTest()
	if _, err := Decode("log_level = \"debug\"\n[runc]\nroot = \"/x\"\n", c); err != nil {
		t.Fatal(err)
	}
	if c.LogLevel != "debug" || c.Runc.Root != "/x" || c.Runc.Binary != "runc" || c.Listen != "/run/magnetar/runc.sock" {
		t.Fatalf("got %+v", c)
	}
	if got := c.TaskSocketPath("runc"); got != "/run/magnetar/runc-task.sock" {
		t.Errorf("TaskSocketPath = %s", got)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct{ text, want string }{
		{"listen = 3\n", "listen"},
		{"[runc]\nbinray = \"x\"\n", "runc.binray"},
		{"bogus = true\n", "bogus"},
		{"log_level = \"loud\"\n", "log_level"},
		{"dir = \"relative\"\n", "dir"},
		{"[runc]\nbinary = \"\"\n", "runc.binary"},
		{"listen = \"/" + strings.Repeat("a", 120) + "\"\n", "listen"},
		{"debug_socket = \"debug.sock\"\n", "debug_socket"},
		{"debug_socket = \"/" + strings.Repeat("a", 120) + "\"\n", "debug_socket"},
		{"forgotten_check = \"-1s\"\n", "forgotten_check"},
		{"containerd_grpc_address = \"containerd.sock\"\n", "containerd_grpc_address"},
		{"containerd_address = \"/run/c/ttrpc.sock\"\n", "containerd_grpc_address"},
		{"this is not toml", "line 1"},
		{"\"\r\n", "cannot contain newlines"}, // toml v1.6.0's ErrorWithPosition panics on it
	}
	for _, tc := range cases {
		_, err := Decode(tc.text, newTest())
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want InvalidArgument naming %q", tc.text, err, tc.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.toml"), false, newTest()); err != nil {
		t.Errorf("optional missing file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "none.toml"), true, newTest()); err == nil {
		t.Error("required missing file: want error")
	}
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("[runc]\nroot = 5\n"), 0o600)
	if _, err := Load(p, true, newTest()); err == nil || !strings.Contains(err.Error(), "runc.root") || !strings.Contains(err.Error(), p) {
		t.Errorf("wrong type: %v", err)
	}
}

// containerd's gRPC socket is beside its ttrpc socket unless set; with no
// ttrpc suffix to go by it must be set, or the check turned off.
func TestContainerdGRPC(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "/run/containerd/containerd.sock"},
		{"containerd_address = \"/w/run/containerd.sock.ttrpc\"\n", "/w/run/containerd.sock"},
		{"containerd_address = \"/w/ttrpc.sock\"\ncontainerd_grpc_address = \"/w/grpc.sock\"\n", "/w/grpc.sock"},
		{"containerd_address = \"/w/ttrpc.sock\"\nforgotten_check = \"0\"\n", ""},
	} {
		c := newTest()
		if _, err := Decode(tc.text, c); err != nil {
			t.Fatalf("Decode(%q): %v", tc.text, err)
		}
		if got := c.ContainerdGRPC(); got != tc.want {
			t.Errorf("Decode(%q): ContainerdGRPC() = %q, want %q", tc.text, got, tc.want)
		}
	}
	if c := newTest(); c.ForgottenCheck != DefaultForgottenCheck {
		t.Errorf("forgotten_check defaults to %s, want %s", c.ForgottenCheck, DefaultForgottenCheck)
	}
}
