package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

type rec struct {
	A string `json:"a"`
	N int    `json:"n"`
}

func TestPutGetDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("x1", rec{"hello", 3}); err != nil {
		t.Fatal(err)
	}
	var r rec
	if err := s.Get("x1", &r); err != nil || r.A != "hello" || r.N != 3 {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	if err := s.Put("x1", rec{"again", 4}); err != nil {
		t.Fatal(err)
	}
	if err := s.Get("x1", &r); err != nil || r.N != 4 {
		t.Fatalf("Get after overwrite = %+v, %v", r, err)
	}
	ids, err := s.IDs()
	if err != nil || len(ids) != 1 || ids[0] != "x1" {
		t.Fatalf("IDs = %v, %v", ids, err)
	}
	if err := s.Delete("x1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("x1"); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if err := s.Get("x1", &r); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after delete = %v, want NotFound", err)
	}
	st, _ := os.Stat(filepath.Join(s.Dir()))
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
	}
}

func TestBadIDsAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".a.json.123.tmp"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".a.json.123.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary leftover not removed: %v", err)
	}
	for _, id := range []string{"", "..", "a/b", "."} {
		if err := s.Put(id, rec{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Put(%q) = %v, want InvalidArgument", id, err)
		}
	}
	var r rec
	if err := s.Get("broken", &r); !errdefs.IsDataLoss(err) {
		t.Errorf("Get(broken) = %v, want DataLoss", err)
	}
}
