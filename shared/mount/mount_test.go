package mount

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	f, d := ParseOptions([]string{"ro", "nosuid", "lowerdir=/a:/b", "upperdir=/u", "rw", "rbind"})
	if f != unix.MS_NOSUID|unix.MS_BIND|unix.MS_REC {
		t.Errorf("flags = %#x", f)
	}
	if d != "lowerdir=/a:/b,upperdir=/u" {
		t.Errorf("data = %q", d)
	}
}

func TestValidate(t *testing.T) {
	bad := [][]*types.Mount{
		{{Type: "", Source: "x"}},
		{{Type: "bind", Target: "/abs"}},
		{{Type: "bind", Target: "a/../../b"}},
		{{Type: "overlay", Options: []string{"lowerdir=" + strings.Repeat("x", 5000)}}},
	}
	for i, ms := range bad {
		if err := Validate("rootfs", ms); err == nil || !strings.Contains(err.Error(), "rootfs[0]") {
			t.Errorf("case %d: %v", i, err)
		}
	}
	if err := Validate("rootfs", bad[3]); !errdefs.IsNotImplemented(err) {
		t.Errorf("long data: %v", err)
	}
	if err := Validate("rootfs", []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a"}}}); err != nil {
		t.Error(err)
	}
}
