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

// WriteNotes writes inside the bundle only: a symlink left where its
// temporary file goes is not followed out (issue 16, item 4).
func TestWriteNotesFollowsNoSymlink(t *testing.T) {
	dir := t.TempDir()
	b, outside := filepath.Join(dir, "bundle"), filepath.Join(dir, "outside")
	for _, d := range []string{b, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(b, ShimBinaryPath+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "made"), filepath.Join(b, "n.json.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := WriteNotes(b, "n.json", map[string]string{"dir": "/x"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("the file a symlink in the bundle points to was written: %q", data)
	}
	if _, err := os.Lstat(filepath.Join(outside, "made")); err == nil {
		t.Error("a file was made where a symlink in the bundle points")
	}
	var n struct{ Dir string }
	if ok, err := ReadNote(b, "n.json", &n); !ok || err != nil || n.Dir != "/x" {
		t.Errorf("ReadNote = %v %v %+v", ok, err, n)
	}
	if st, err := os.Lstat(filepath.Join(b, ShimBinaryPath)); err != nil || !st.Mode().IsRegular() {
		t.Errorf("shim-binary-path: %v %v", st, err)
	}
}
