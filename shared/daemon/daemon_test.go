package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
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
	if err := run(testSandboxer(&deleted), args, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	var resp taskv2.DeleteResponse
	if err := proto.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Pid != 42 || resp.ExitStatus != 137 || deleted != "abc@/b/abc" {
		t.Errorf("resp %v deleted %q", &resp, deleted)
	}
	if err := run(testSandboxer(&deleted), []string{"-id", "../x", "delete"}, strings.NewReader(""), &out, &errb); err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("bad id: %v", err)
	}
}

func TestInfoAndVersion(t *testing.T) {
	var d string
	var out, errb bytes.Buffer
	if err := run(testSandboxer(&d), []string{"-info"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out.Bytes(), &info); err != nil || info.Name != "io.containerd.magnetar-fake.v1" {
		t.Errorf("info %v %v", &info, err)
	}
	out.Reset()
	if err := run(testSandboxer(&d), []string{"--version"}, strings.NewReader(""), &out, &errb); err != nil || !strings.Contains(out.String(), "fake-sandboxer") {
		t.Errorf("version %q %v", out.String(), err)
	}
}

func TestBadFlagsAndConfig(t *testing.T) {
	var d string
	var out, errb bytes.Buffer
	if err := run(testSandboxer(&d), []string{"--nope"}, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := run(testSandboxer(&d), []string{"--config", "/nonexistent/x.toml"}, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("missing explicit config accepted")
	}
	if err := run(testSandboxer(&d), []string{"--config", "/dev/null", "--listen", "relative.sock"}, strings.NewReader(""), &out, &errb); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("relative listen: %v", err)
	}
	if err := run(testSandboxer(&d), []string{"--config", "/dev/null", "extra"}, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("stray argument accepted")
	}
}

// TestInfoFeatures: -info reads the handler's options (ConfigPath) from
// stdin, loads that configuration, and returns the sandboxer's Features as
// containerd's CRI decodes them; without options the default file is read
// (here absent: defaults); garbage on stdin is an error.
func TestInfoFeatures(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "fake.toml")
	if err := os.WriteFile(cfgFile, []byte("log_level = \"debug\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sb := testSandboxer(new(string))
	sb.Features = func(_ context.Context, c Config) (*features.Features, error) {
		f := &features.Features{OCIVersionMin: "1.0.0", OCIVersionMax: "1.3.0", MountOptions: []string{"rro"}}
		if c.Common().LogLevel == "debug" {
			f.Linux = &features.Linux{Namespaces: []string{"user"}}
		}
		return f, nil
	}
	info := func(stdin []byte) (*apitypes.RuntimeInfo, *features.Features, error) {
		var out, errb bytes.Buffer
		if err := run(sb, []string{"-info"}, bytes.NewReader(stdin), &out, &errb); err != nil {
			return nil, nil, err
		}
		var ri apitypes.RuntimeInfo
		if err := proto.Unmarshal(out.Bytes(), &ri); err != nil {
			return nil, nil, err
		}
		v, err := typeurl.UnmarshalAny(ri.Features)
		if err != nil {
			return nil, nil, err
		}
		return &ri, v.(*features.Features), nil
	}
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(opts)
	ri, f, err := info(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Options.GetTypeUrl() != opts.GetTypeUrl() || f.Linux == nil || f.Linux.Namespaces[0] != "user" || f.MountOptions[0] != "rro" {
		t.Errorf("with ConfigPath: options %v, features %+v", ri.Options, f)
	}
	if _, f, err = info(nil); err != nil || f.Linux != nil {
		t.Errorf("without options: %+v %v", f, err)
	}
	// without options, <name>.toml of MAGNETAR_CONF_DIR (what the shipped
	// drop-ins rely on: no options table)
	named := filepath.Join(filepath.Dir(cfgFile), sb.Name+".toml")
	if err := os.Rename(cfgFile, named); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ConfDirEnv, filepath.Dir(cfgFile))
	if _, f, err = info(nil); err != nil || f.Linux == nil {
		t.Errorf("without options, %s set: %+v %v", ConfDirEnv, f, err)
	}
	os.Rename(named, cfgFile)
	if _, _, err := info([]byte("garbage")); err == nil {
		t.Error("garbage options accepted")
	}
	rel, _ := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "fake.toml"})
	raw, _ = proto.Marshal(rel)
	if _, _, err := info(raw); err == nil || !strings.Contains(err.Error(), "ConfigPath") {
		t.Errorf("relative ConfigPath: %v", err)
	}
	// a sandboxer without Features declares only the OCI versions
	sb.Features = nil
	if _, f, err = info(nil); err != nil || f.OCIVersionMax == "" || f.Linux != nil || len(f.MountOptions) > 0 {
		t.Errorf("no Features: %+v %v", f, err)
	}
}
