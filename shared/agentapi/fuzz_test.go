package agentapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzParseStdioPath: a path ParseStdioPath accepts is exactly what
// StdioPath makes of the parts it returns (a clean path under IORoot, one
// stream, nothing else), and those parts come back from it.
func FuzzParseStdioPath(f *testing.F) {
	for _, p := range []string{IORoot + "/c1/init/stdout", IORoot + "/c1/exec-e1/stdin", IORoot + "/c1/exec-/stdin", IORoot + "/../c/init/stdin",
		IORoot + "/c/init/stdout/", IORoot + "//c/init/stdout", "/tmp/x", IORoot + "/c/x/stdout", IORoot + "/c/init/stdall", IORoot + "/./init/stdin"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, e, s, err := ParseStdioPath(p)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ParseStdioPath(%q) = %v", p, err)
			}
			return
		}
		if back := StdioPath(c, e, s); back != p {
			t.Fatalf("ParseStdioPath(%q) = %q %q %q, which StdioPath makes %q", p, c, e, s, back)
		}
		if c == "" || c == "." || c == ".." || strings.Contains(c+e, "/") || !strings.HasPrefix(p, IORoot+"/") {
			t.Fatalf("ParseStdioPath(%q) = %q %q %q", p, c, e, s)
		}
		c2, e2, s2, err := ParseStdioPath(StdioPath(c, e, s))
		if err != nil || c2 != c || e2 != e || s2 != s {
			t.Fatalf("StdioPath(%q, %q, %q) parses to %q %q %q, %v", c, e, s, c2, e2, s2, err)
		}
	})
}
