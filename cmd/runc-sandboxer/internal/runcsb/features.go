package runcsb

import (
	"context"
	"fmt"
	"slices"

	runc "github.com/containerd/go-runc"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// unsupportedNamespaces are the namespaces runc may offer that a
// magnetar-runc pod cannot have.
var unsupportedNamespaces = []string{}

// runtimeFeatures is what magnetar-runc's pods support, for containerd's
// runtime introspection: what the configured runc reports (`runc
// features`: mount options such as rro, idmapped mounts, namespaces,
// seccomp, ...), since the sandboxer passes containers' specs to it, less
// what the sandboxer itself does not do with a pod (unsupportedNamespaces).
func runtimeFeatures(ctx context.Context, c daemon.Config) (*features.Features, error) {
	cfg := c.(*Config)
	bin, err := config.Executable("runc.binary", cfg.Runc.Binary)
	if err != nil {
		return nil, err
	}
	f, err := (&runc.Runc{Command: bin}).Features(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s features: %w", bin, err)
	}
	if f.Linux != nil {
		f.Linux.Namespaces = slices.DeleteFunc(f.Linux.Namespaces, func(ns string) bool { return slices.Contains(unsupportedNamespaces, ns) })
	}
	return f, nil
}
