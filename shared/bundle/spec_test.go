package bundle

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestWriteSpec(t *testing.T) {
	dir := t.TempDir()
	sp := &specs.Spec{Version: "1.2.0", Process: &specs.Process{Args: []string{"/bin/true"}}}
	if err := WriteSpec(dir, sp); err != nil {
		t.Fatal(err)
	}
	var got specs.Spec
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &got)
	}
	if err != nil || got.Version != "1.2.0" || got.Process.Args[0] != "/bin/true" {
		t.Errorf("config.json: %+v, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode: %v, %v; want 0600", fi.Mode(), err)
	}
	if err := WriteSpec(filepath.Join(dir, "absent"), sp); err == nil {
		t.Error("no error writing into a missing directory")
	}
}
