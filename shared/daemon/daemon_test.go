package daemon

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/magnetar-runtime/magnetar/shared/config"
)

type fakeCfg struct{ config.Daemon }

func (c *fakeCfg) Common() *config.Daemon { return &c.Daemon }
func (c *fakeCfg) Validate() error        { return c.Daemon.Validate() }

func testSandboxer(deleted *string) Sandboxer {
	return Sandboxer{
		Name:      "fake",
		NewConfig: func() Config { return &fakeCfg{config.DefaultDaemon("fake")} },
		ShimDelete: func(ctx context.Context, id, bundle string) (*ShimExit, error) {
			*deleted = id + "@" + bundle
			return &ShimExit{Pid: 42, Status: 137, At: time.Unix(100, 0)}, nil
		},
	}
}

func TestShimDelete(t *testing.T) {
	var deleted string
	var out, errb bytes.Buffer
	args := []string{"-namespace", "k8s.io", "-address", "/run/c.sock", "-publish-binary", "/bin/containerd", "-id", "abc", "-bundle", "/b/abc", "delete"}
	if err := run(testSandboxer(&deleted), args, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	var resp taskv2.DeleteResponse
	if err := proto.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Pid != 42 || resp.ExitStatus != 137 || deleted != "abc@/b/abc" {
		t.Errorf("resp %v deleted %q", &resp, deleted)
	}
	if err := run(testSandboxer(&deleted), []string{"-id", "../x", "delete"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("bad id: %v", err)
	}
}

func TestInfoAndVersion(t *testing.T) {
	var d string
	var out, errb bytes.Buffer
	if err := run(testSandboxer(&d), []string{"-info"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out.Bytes(), &info); err != nil || info.Name != "io.containerd.magnetar-fake.v1" {
		t.Errorf("info %v %v", &info, err)
	}
	out.Reset()
	if err := run(testSandboxer(&d), []string{"--version"}, &out, &errb); err != nil || !strings.Contains(out.String(), "fake-sandboxer") {
		t.Errorf("version %q %v", out.String(), err)
	}
}

func TestBadFlagsAndConfig(t *testing.T) {
	var d string
	var out, errb bytes.Buffer
	if err := run(testSandboxer(&d), []string{"--nope"}, &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := run(testSandboxer(&d), []string{"--config", "/nonexistent/x.toml"}, &out, &errb); err == nil {
		t.Error("missing explicit config accepted")
	}
	if err := run(testSandboxer(&d), []string{"--config", "/dev/null", "--listen", "relative.sock"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("relative listen: %v", err)
	}
	if err := run(testSandboxer(&d), []string{"--config", "/dev/null", "extra"}, &out, &errb); err == nil {
		t.Error("stray argument accepted")
	}
}
