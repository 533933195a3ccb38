package tasktest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// Kind is what a canonical program does.
type Kind int

const (
	// Print writes Program.Stdout and a newline to stdout, then
	// Program.Stderr and a newline to stderr, and exits Program.Code.
	Print Kind = iota
	// Exit exits Program.Code at once, writing nothing.
	Exit
	// Sleep runs until it is killed.
	Sleep
	// Cat copies stdin to stdout until EOF, then exits 0.
	Cat
	// Missing names a program that is not in the rootfs: it cannot run.
	Missing
)

// Program is one of the canonical programs the suite runs. Its texts are
// made of [a-z0-9-] only, so that they need no quoting in a shell.
type Program struct {
	Kind   Kind
	Stdout string
	Stderr string
	Code   int
}

// Workload runs the canonical programs in a backend's containers.
type Workload struct {
	// Bundle fills bundle (an empty directory in the suite's work dir) as
	// containerd would: a config.json (whose process the suite then sets,
	// along with the pod annotation) and an image. It returns the rootfs
	// mounts to send with Task.Create, which the backend mounts at
	// bundle/rootfs (nil: config.json's root.path is the rootfs).
	Bundle func(t *testing.T, bundle string) []*types.Mount
	// Args is the process.args that run p in that rootfs.
	Args func(p Program) []string
}

// bundleOf makes the bundle of a container running p in pod podID ("" for
// none) under work/id, and returns its path and the rootfs mounts.
func (s *suite) bundleOf(t *testing.T, work, id, podID string, p Program) (string, []*types.Mount) {
	t.Helper()
	// the first bundle of an id is bundle-<id> (what loadBundle finds);
	// an id used again in a test gets bundle-<id>.2, ...
	bundle := filepath.Join(work, "bundle-"+id)
	for n := 2; ; n++ {
		err := os.Mkdir(bundle, 0o700)
		if err == nil {
			break
		}
		if !os.IsExist(err) {
			t.Fatal(err)
		}
		bundle = filepath.Join(work, fmt.Sprintf("bundle-%s.%d", id, n))
	}
	rootfs := s.w.Bundle(t, bundle)
	sp := readSpec(t, bundle)
	if sp.Process == nil {
		sp.Process = &specs.Process{Cwd: "/"}
	}
	sp.Process.Args = s.w.Args(p)
	sp.Process.Terminal = false
	if sp.Annotations == nil {
		sp.Annotations = map[string]string{}
	}
	delete(sp.Annotations, sandbox.PodAnnotation)
	if podID != "" {
		sp.Annotations[sandbox.PodAnnotation] = podID
	}
	writeSpec(t, bundle, sp)
	// for the child of a Crash, which does not make bundles (loadBundle)
	b, err := json.Marshal(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle+".rootfs.json", b, 0o600); err != nil {
		t.Fatal(err)
	}
	return bundle, rootfs
}

// loadBundle is the bundle of container id that bundleOf made in the
// parent of a Crash.
func loadBundle(t *testing.T, work, id string) (string, []*types.Mount) {
	t.Helper()
	bundle := filepath.Join(work, "bundle-"+id)
	b, err := os.ReadFile(bundle + ".rootfs.json")
	if err != nil {
		t.Fatalf("bundle of %s: %v", id, err)
	}
	var rootfs []*types.Mount
	if err := json.Unmarshal(b, &rootfs); err != nil {
		t.Fatal(err)
	}
	return bundle, rootfs
}

func readSpec(t *testing.T, bundle string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatalf("Workload.Bundle wrote no config.json: %v", err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	return &sp
}

func writeSpec(t *testing.T, bundle string, sp *specs.Spec) {
	t.Helper()
	b, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// execSpec is the process of an exec running p in the container of bundle:
// the container's process (env, cwd, user) with p's args.
func (s *suite) execSpec(t *testing.T, bundle string, p Program) *specs.Process {
	t.Helper()
	sp := readSpec(t, bundle)
	proc := *sp.Process
	proc.Args = s.w.Args(p)
	proc.Terminal = false
	return &proc
}

// BusyboxArgs is Workload.Args for a rootfs with a static busybox at
// /bin/busybox and /bin/sh linked to it.
func BusyboxArgs(p Program) []string {
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	switch p.Kind {
	case Print:
		return sh(fmt.Sprintf("echo %s; echo %s >&2; exit %d", p.Stdout, p.Stderr, p.Code))
	case Exit:
		return sh(fmt.Sprintf("exit %d", p.Code))
	case Sleep:
		return []string{"/bin/busybox", "sleep", "3600"}
	case Cat:
		return []string{"/bin/busybox", "cat"}
	}
	return []string{"/no/such/program"}
}
