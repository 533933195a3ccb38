package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateID(t *testing.T) {
	good := []string{"abc", strings.Repeat("a", 64), "pod_1.x-2", "A1"}
	for _, id := range good {
		if err := ValidateID("sandbox_id", id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	bad := []string{"", "..", ".", "a/b", "/etc", "a..b", strings.Repeat("a", MaxIDLength+1), "-x", "a b", "a\x00b", "ä"}
	for _, id := range bad {
		err := ValidateID("sandbox_id", id)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q) = %v, want InvalidArgument", id, err)
			continue
		}
		if !strings.Contains(err.Error(), "sandbox_id") {
			t.Errorf("ValidateID(%q) error %q does not name the field", id, err)
		}
	}
}

func TestPodOf(t *testing.T) {
	id, err := PodOf(&specs.Spec{Annotations: map[string]string{PodAnnotation: "pod-1"}}, "magnetar-x")
	if err != nil || id != "pod-1" {
		t.Fatalf("PodOf = %q, %v; want pod-1", id, err)
	}
	for name, sp := range map[string]*specs.Spec{
		"nil spec":       nil,
		"no annotation":  {},
		"bad id":         {Annotations: map[string]string{PodAnnotation: "../etc"}},
		"empty id value": {Annotations: map[string]string{PodAnnotation: ""}},
	} {
		_, err := PodOf(sp, "magnetar-x")
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), PodAnnotation) {
			t.Errorf("%s: PodOf error %v, want InvalidArgument naming %s", name, err, PodAnnotation)
		}
	}
}
