package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/config"
)

func init() {
	// the type URL containerd registers for runtime features (core/runtime)
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "features", "Features")
}

// printInfo answers containerd's runtime introspection, `<runtime_path>
// -info`, which its CRI runs for every runtime handler at start-up (and its
// task manager before a container with idmapped mounts): a RuntimeInfo
// protobuf on stdout whose Features tell containerd, and through it the
// kubelet, whether the handler's pods may use user namespaces (hostUsers:
// false) and recursive read-only mounts.
//
// stdin holds the handler's runtime options, if its drop-in has an options
// table: a runtimeoptions.v1.Options whose ConfigPath names the sandboxer's
// configuration; without it <name>.toml in $MAGNETAR_CONF_DIR, else in
// /etc/magnetar, is read. The shipped drop-ins have no options table:
// containerd 2.4 reads a user-namespaced container's runtime options as
// runc's, and cannot start it with runtimeoptions (containerd issue
// 11091). Features come from
// Sandboxer.Features with that configuration; a sandboxer without it
// declares nothing beyond the OCI spec version.
// ConfDirEnv names the directory -info reads the configuration from when
// containerd passes no ConfigPath (default config.DefaultConfDir): for a
// containerd whose sandboxers' files are not in /etc/magnetar.
const ConfDirEnv = "MAGNETAR_CONF_DIR"

func printInfo(sb Sandboxer, stdin io.Reader, stdout io.Writer) error {
	dir := config.DefaultConfDir
	if d := os.Getenv(ConfDirEnv); d != "" {
		dir = d
	}
	opts, path, err := readInfoOptions(stdin, filepath.Join(dir, sb.Name+".toml"))
	if err != nil {
		return err
	}
	info := &apitypes.RuntimeInfo{
		Name:    "io.containerd.magnetar-" + sb.Name + ".v1",
		Version: &apitypes.RuntimeVersion{Version: Version},
		Options: opts,
	}
	f := &features.Features{OCIVersionMin: "1.0.0", OCIVersionMax: specs.Version}
	if sb.Features != nil {
		cfg := sb.NewConfig()
		if _, err := config.Load(path, opts != nil, cfg); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if f, err = sb.Features(ctx, cfg); err != nil {
			return fmt.Errorf("features: %w", err)
		}
	}
	if info.Features, err = typeurl.MarshalAnyToProto(f); err != nil {
		return err
	}
	data, err := proto.Marshal(info)
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}

// readInfoOptions reads the runtime options containerd passes to -info
// (nothing, or a protobuf Any) and the configuration file they name
// (def when none).
func readInfoOptions(r io.Reader, def string) (*anypb.Any, string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, "", fmt.Errorf("runtime options on stdin: %w", err)
	}
	if len(data) == 0 {
		return nil, def, nil
	}
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return nil, "", fmt.Errorf("runtime options on stdin: %w", err)
	}
	var o runtimeoptions.Options
	if err := a.UnmarshalTo(&o); err != nil {
		return nil, "", errors.Join(fmt.Errorf("runtime options on stdin: want %s (a drop-in's options table with ConfigPath), got %s", "runtimeoptions.v1.Options", a.GetTypeUrl()), err)
	}
	if o.ConfigPath == "" {
		return &a, def, nil
	}
	if !filepath.IsAbs(o.ConfigPath) {
		return nil, "", fmt.Errorf("runtime options: ConfigPath %q: must be an absolute path", o.ConfigPath)
	}
	return &a, o.ConfigPath, nil
}
