package cgroups

import (
	"os"
	"testing"
)

func TestWithin(t *testing.T) {
	v2 := "0::/pods/p1/_sandbox\n"
	hybrid := "12:pids:/pods/p1\n5:memory:/pods/p1/_sandbox\n1:name=systemd:/x\n0::/\n"
	for _, c := range []struct {
		text, path string
		unified    bool
		want       bool
	}{
		{v2, "/pods/p1", true, true},
		{v2, "/pods/p1/_sandbox", true, true},
		{v2, "/pods/p", true, false}, // a prefix of the name is no parent
		{v2, "/pods/p2", true, false},
		{hybrid, "/pods/p1", false, true},
		{hybrid, "/pods/p2", false, false},
		{"0::/pods/p1\n", "/pods/p1", false, false}, // v1 host: the memory hierarchy decides
		{"", "/pods/p1", true, false},
	} {
		if got := within(c.text, c.path, c.unified); got != c.want {
			t.Errorf("within(%q, %q, unified=%v) = %v, want %v", c.text, c.path, c.unified, got, c.want)
		}
	}
}

// This process is within its own cgroup, and not within one it is not in.
func TestWithinSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/cgroup"); err != nil {
		t.Skip("no /proc/self/cgroup")
	}
	if in, err := Within("/magnetar-no-such-cgroup", os.Getpid()); err != nil || in {
		t.Errorf("Within(a cgroup nobody is in) = %v, %v", in, err)
	}
	if _, err := Within("relative", os.Getpid()); err == nil {
		t.Error("a relative cgroups path was taken")
	}
}
