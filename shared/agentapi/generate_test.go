package agentapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent reruns the generator (Debian's protoc and the
// plugins at the versions go.mod pins, as hack/agent.mk does) into a
// temporary directory and compares byte for byte with the committed files.
// It skips, saying why, when protoc or the go tool is missing or protoc is
// not the version the committed code was made with.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not installed (apt-get install protobuf-compiler): cannot check the generated code")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
			goBin = p
		} else {
			t.Skip("go tool not in PATH: cannot build the protoc plugins")
		}
	}
	committed, err := os.ReadFile("agent.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(protoc, "--version").Output()
	if err != nil {
		t.Fatalf("protoc --version: %v", err)
	}
	have := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "libprotoc "))
	m := regexp.MustCompile(`(?m)^//\s+protoc\s+v(\S+)$`).FindSubmatch(committed)
	if m == nil {
		t.Fatal("agent.pb.go has no protoc version line")
	}
	if want := string(m[1]); have != want {
		t.Skipf("protoc is %s, the committed code was generated with %s (Debian bookworm's protobuf-compiler)", have, want)
	}

	tmp := t.TempDir()
	for _, pkg := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go", "github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc"} {
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(tmp, filepath.Base(pkg)), pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, b)
		}
	}
	gen := filepath.Join(tmp, "out")
	if err := os.Mkdir(gen, 0o755); err != nil {
		t.Fatal(err)
	}
	// the same arguments as hack/agent.mk's agent-generate
	cmd := exec.Command(protoc, "-I", ".", "-I", "/usr/include",
		"--plugin=protoc-gen-go="+filepath.Join(tmp, "protoc-gen-go"),
		"--plugin=protoc-gen-go-ttrpc="+filepath.Join(tmp, "protoc-gen-go-ttrpc"),
		"--go_out="+gen, "--go_opt=paths=source_relative",
		"--go-ttrpc_out="+gen, "--go-ttrpc_opt=paths=source_relative",
		"agent.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, f := range []string{"agent.pb.go", "agent_ttrpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(gen, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make agent-generate` and commit the result", f)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
