package bundle

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNotes(t *testing.T) {
	dir := t.TempDir()
	if err := WriteNotes(dir, "magnetar-x.json", map[string]string{"dir": "/x"}); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if b, _ := os.ReadFile(filepath.Join(dir, ShimBinaryPath)); string(b) != self {
		t.Errorf("shim-binary-path %q, want %q", b, self)
	}
	var n struct{ Dir string }
	if ok, err := ReadNote(dir, "magnetar-x.json", &n); !ok || err != nil || n.Dir != "/x" {
		t.Errorf("ReadNote = %v %v %+v", ok, err, n)
	}
	if ok, err := ReadNote("relative", "magnetar-x.json", &n); ok || err != nil {
		t.Errorf("relative bundle: %v %v", ok, err)
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o600)
	if _, err := ReadNote(dir, "bad.json", &n); err == nil {
		t.Error("a corrupt note read fine")
	}
	RemoveNotes(dir, "magnetar-x.json")
	if left, _ := os.ReadDir(dir); len(left) != 1 { // bad.json
		t.Errorf("left %v", left)
	}
}
