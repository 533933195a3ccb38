package killpoint

import (
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		spec string
		name string
		n    int64
		ok   bool
	}{
		{"task.create.started", "task.create.started", 1, true},
		{"controller.create.persisted:3", "controller.create.persisted", 3, true},
		{"controller.create.persisted:0", "", 0, false},
		{"controller.create.persisted:-1", "", 0, false},
		{"controller.create.persisted:x", "", 0, false},
		{"controller.create", "", 0, false},
		{"nope:2", "", 0, false},
		{"", "", 0, false},
	} {
		name, n, err := Parse(c.spec)
		if (err == nil) != c.ok || name != c.name || n != c.n {
			t.Errorf("Parse(%q) = %q, %d, %v; want %q, %d, ok=%v", c.spec, name, n, err, c.name, c.n, c.ok)
		}
	}
}

// arm sets up the environment's kill point with a counting kill.
func arm(t *testing.T, spec string) *int {
	t.Helper()
	killed := 0
	old := kill
	kill = func() { killed++ }
	t.Cleanup(func() { kill, armed, nth = old, "", 0 })
	t.Setenv(EnvVar, spec)
	got, err := Setup()
	if err != nil || got != spec {
		t.Fatalf("Setup with %q: %q, %v", spec, got, err)
	}
	return &killed
}

func TestHitNth(t *testing.T) {
	killed := arm(t, TaskCreateStarted+":3")
	Hit(ControllerCreatePersisted) // another point never counts
	for i := 1; i <= 5; i++ {
		Hit(TaskCreateStarted)
		want := 0
		if i >= 3 {
			want = 1 // the third hit, and only it
		}
		if *killed != want {
			t.Fatalf("after hit %d: killed %d times, want %d", i, *killed, want)
		}
	}
}

func TestHitFirst(t *testing.T) {
	killed := arm(t, ControllerCreateDriver)
	Hit(ControllerCreateDriver)
	if *killed != 1 {
		t.Fatalf("killed %d times, want 1", *killed)
	}
}

func TestUnset(t *testing.T) {
	killed := 0
	old := kill
	kill = func() { killed++ }
	t.Cleanup(func() { kill = old })
	t.Setenv(EnvVar, "")
	if got, err := Setup(); err != nil || got != "" {
		t.Fatalf("Setup with nothing set: %q, %v", got, err)
	}
	for _, n := range Names {
		Hit(n)
	}
	if killed != 0 {
		t.Fatalf("killed %d times with no kill point set", killed)
	}
}

func TestSetupRefusesUnknown(t *testing.T) {
	t.Setenv(EnvVar, "controller.create.persisted:2x")
	if _, err := Setup(); err == nil {
		t.Fatal("Setup accepted a malformed count")
	}
	t.Setenv(EnvVar, "task.created")
	if _, err := Setup(); err == nil {
		t.Fatal("Setup accepted an unknown name")
	}
}
