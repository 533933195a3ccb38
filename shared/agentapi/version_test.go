package agentapi

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestCheckVersion(t *testing.T) {
	if err := CheckVersion(&HealthResponse{Version: Version, Major: Major, Minor: Minor}); err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(&HealthResponse{Version: "1.7.0", Major: Major, Minor: 7}); err != nil {
		t.Fatalf("a newer minor must be accepted: %v", err)
	}
	err := CheckVersion(&HealthResponse{Version: "2.0.0", Major: 2})
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("major mismatch: got %v, want FailedPrecondition", err)
	}
	if err := CheckVersion(nil); err == nil {
		t.Fatal("nil answer accepted")
	}
}

func TestStdioPathRoundTrip(t *testing.T) {
	for _, c := range []struct{ id, exec, stream, want string }{
		{"c1", "", Stdout, "/run/magnetar/io/c1/init/stdout"},
		{"c1", "e1", Stdin, "/run/magnetar/io/c1/exec-e1/stdin"},
		{"c1", "init", Stderr, "/run/magnetar/io/c1/exec-init/stderr"},
	} {
		p := StdioPath(c.id, c.exec, c.stream)
		if p != c.want {
			t.Fatalf("StdioPath = %q, want %q", p, c.want)
		}
		id, ex, st, err := ParseStdioPath(p)
		if err != nil || id != c.id || ex != c.exec || st != c.stream {
			t.Fatalf("ParseStdioPath(%q) = %q %q %q %v", p, id, ex, st, err)
		}
	}
	for _, bad := range []string{"/tmp/x", "/run/magnetar/io/c1/init/stdout/x", "/run/magnetar/io/c1/other/stdout",
		"/run/magnetar/io/c1/exec-/stdout", "/run/magnetar/io/c1/init/tty", "/run/magnetar/io/../io/c1/init/stdout"} {
		if _, _, _, err := ParseStdioPath(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseStdioPath(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}
