package sandbox

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzValidateID: an id ValidateID accepts is safe as one path element (no
// '/', not "." or "..", no NUL, at most MaxIDLength bytes, no leading '-'
// that a command line would take for a flag) and joins below a root as
// itself; one it refuses gets an invalid-argument error naming the field.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"", "a", "abc-DEF_0.9", strings.Repeat("f", 64), strings.Repeat("x", MaxIDLength+1),
		".", "..", "a..b", "../etc", "a/b", "/abs", "-flag", ".hidden", "a\x00b", "a\nb", "ünï", "a b", "a.", "a-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID("container_id", id)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "container_id") {
				t.Fatalf("ValidateID(%q) = %v: want an invalid-argument error naming container_id", id, err)
			}
			return
		}
		switch {
		case id == "", len(id) > MaxIDLength, id == ".", id == "..",
			strings.ContainsAny(id, "/\\\x00\n\r\t :*?\"'`$"), strings.HasPrefix(id, "-"), strings.HasPrefix(id, "."):
			t.Fatalf("ValidateID accepted %q", id)
		}
		const root = "/var/lib/magnetar/state"
		p := filepath.Join(root, id)
		if filepath.Dir(p) != root || filepath.Base(p) != id {
			t.Fatalf("id %q joined below %s is %s: not one element", id, root, p)
		}
		if err := ValidateID("container_id", filepath.Base(p)); err != nil {
			t.Fatalf("id %q does not round-trip through a path: %v", id, err)
		}
	})
}

// FuzzPodOf: the pod id a container's CRI annotation names is returned only
// when it is a valid id, and exactly as written.
func FuzzPodOf(f *testing.F) {
	f.Add("pod-1", true)
	f.Add("", true)
	f.Add("../../etc", true)
	f.Add("x", false)
	f.Fuzz(func(t *testing.T, id string, set bool) {
		sp := &specs.Spec{Annotations: map[string]string{"io.kubernetes.cri.container-type": "container"}}
		if set {
			sp.Annotations[PodAnnotation] = id
		}
		got, err := PodOf(sp, "magnetar-test")
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), PodAnnotation) {
				t.Fatalf("PodOf(%q) = %v: want an invalid-argument error naming the annotation", id, err)
			}
			return
		}
		if !set || got != id || ValidateID("x", got) != nil {
			t.Fatalf("PodOf(%q, set=%v) = %q", id, set, got)
		}
	})
}
