package wasitest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

var (
	goGuestOnce sync.Once
	goGuestWasm []byte
	goGuestErr  string
)

// goGuest builds testdata/goguest for wasip1 once per test binary.
func goGuest(t *testing.T) []byte {
	t.Helper()
	goGuestOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			goGuestErr = "no go toolchain on PATH to build the wasip1 guest"
			return
		}
		_, self, _, ok := runtime.Caller(0)
		if !ok {
			goGuestErr = "cannot locate the suite's source"
			return
		}
		src := filepath.Join(filepath.Dir(self), "testdata", "goguest")
		tmpDir, err := os.MkdirTemp("", "wasitest-goguest-")
		if err != nil {
			goGuestErr = err.Error()
			return
		}
		defer os.RemoveAll(tmpDir)
		tmp := filepath.Join(tmpDir, "goguest.wasm")
		cmd := exec.Command(gobin, "build", "-o", tmp, ".")
		cmd.Dir = src
		// GOFLAGS cleared: a -race or -mod=vendor meant for the host build
		// does not apply to a wasip1 guest with no dependencies.
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			goGuestErr = "go build of the guest failed: " + err.Error() + "\n" + string(b)
			return
		}
		goGuestWasm, err = os.ReadFile(tmp)
		if err != nil {
			goGuestErr = err.Error()
		}
	})
	if goGuestWasm == nil {
		if strings.HasPrefix(goGuestErr, "no go toolchain") {
			t.Skip(goGuestErr)
		}
		t.Fatal(goGuestErr)
	}
	return goGuestWasm
}

func (s *suite) testGoGuest(t *testing.T) {
	b := goGuest(t)
	dir := t.TempDir()
	e := s.engine(t, wasi.EngineConfig{CacheDir: filepath.Join(dir, "cache")})
	start := time.Now()
	m := s.load(t, e, b)
	t.Logf("load of the %d-byte Go guest: %s in %v", len(b), m.Info().Source, time.Since(start))

	t.Run("Hello", func(t *testing.T) {
		r, out, errOut := s.run(t, e, b, wasi.RunConfig{Args: []string{"guest.wasm", "hello"}})
		expectExit(t, r, 0, errOut)
		if out != "hello from go\n" || errOut != "hello stderr from go\n" {
			t.Fatalf("stdout %q stderr %q", out, errOut)
		}
	})
	t.Run("EnvCwdFiles", func(t *testing.T) {
		rootfs := filepath.Join(dir, "rootfs")
		os.MkdirAll(filepath.Join(rootfs, "work"), 0o755)
		os.WriteFile(filepath.Join(rootfs, "work/input.txt"), []byte("relative input\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("SECRET\n"), 0o644)
		r, out, errOut := s.run(t, e, b, wasi.RunConfig{
			Args:     []string{"guest.wasm", "env", "a b"},
			Env:      []string{"GREETING=hi there"},
			Cwd:      "/work",
			Preopens: []wasi.Preopen{{Host: rootfs, Guest: "/"}},
		})
		expectExit(t, r, 0, errOut)
		for _, want := range []string{
			`args=["guest.wasm" "env" "a b"]`,
			"GREETING=hi there",
			"cwd=/work err=<nil>",
			`relative="relative input" err=<nil>`,
			"write err=<nil>",
			"escape err=true",
		} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
		if got, _ := os.ReadFile(filepath.Join(rootfs, "out.txt")); string(got) != "written by go\n" {
			t.Errorf("host sees %q", got)
		}
	})
	t.Run("ExitCodes", func(t *testing.T) {
		for _, c := range []string{"0", "3", "126", "255"} {
			r, _, errOut := s.run(t, e, b, wasi.RunConfig{Args: []string{"guest.wasm", "exit", c}})
			want := map[string]uint32{"0": 0, "3": 3, "126": 126, "255": 255}[c]
			expectExit(t, r, want, errOut)
		}
	})
	t.Run("Sleep", func(t *testing.T) {
		r, out, errOut := s.run(t, e, b, wasi.RunConfig{Args: []string{"guest.wasm", "sleep", "50ms"}})
		expectExit(t, r, 0, errOut)
		if out != "ready\nslept true\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("Stdin", func(t *testing.T) {
		in := strings.Repeat("go stdin\n", 5000)
		r, out, errOut := s.run(t, e, b, wasi.RunConfig{Args: []string{"guest.wasm", "cat"}, Stdin: strings.NewReader(in)})
		expectExit(t, r, 0, errOut)
		if out != "ready\n"+in {
			t.Fatalf("cat: %d bytes, want %d; stderr %s", len(out), len(in)+6, errOut)
		}
	})
	t.Run("OutOfMemory", func(t *testing.T) {
		const limit = 64 << 20
		mm := s.load(t, e, b)
		var errOut buffer
		inst, err := mm.Start(context.Background(), &wasi.RunConfig{Args: []string{"guest.wasm", "oom"}, MemoryLimit: limit, Stderr: &errOut})
		if err != nil {
			t.Fatal(err)
		}
		r := waitDone(t, inst)
		st := inst.Stats()
		t.Logf("result %+v, memory %d of %d; stderr: %.80q", r, st.MemoryBytes, uint64(limit), errOut.String())
		if r.ExitCode == 0 || r.Killed {
			t.Fatalf("the Go guest survived past its limit: %+v", r)
		}
		if st.MemoryBytes > limit {
			t.Fatalf("memory %d over the limit %d", st.MemoryBytes, limit)
		}
		if !r.OutOfMemory {
			t.Errorf("OutOfMemory not set")
		}
		r2, out, _ := s.run(t, e, b, wasi.RunConfig{Args: []string{"guest.wasm", "hello"}})
		if r2.ExitCode != 0 || out != "hello from go\n" {
			t.Fatalf("the engine does not run the next module: %+v %q", r2, out)
		}
	})
	t.Run("KillSleeping", func(t *testing.T) {
		inst, _ := s.startReady(t, m, wasi.RunConfig{Args: []string{"guest.wasm", "sleep", "1h"}})
		time.Sleep(settle)
		checkKilled(t, inst, killAndTime(t, inst), "go guest sleeping")
	})
	t.Run("KillReadingStdin", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		inst, _ := s.startReady(t, m, wasi.RunConfig{Args: []string{"guest.wasm", "cat"}, Stdin: pr})
		time.Sleep(settle)
		checkKilled(t, inst, killAndTime(t, inst), "go guest reading stdin")
	})
	t.Run("InstantiateRunHello", func(t *testing.T) {
		const n = 20
		var total time.Duration
		for k := 0; k < n; k++ {
			start := time.Now()
			inst, err := m.Start(context.Background(), &wasi.RunConfig{Args: []string{"guest.wasm", "hello"}})
			if err != nil {
				t.Fatal(err)
			}
			expectExit(t, waitDone(t, inst), 0, "")
			total += time.Since(start)
		}
		t.Logf("instantiate + run hello (Go guest): %v mean over %d", total/n, n)
	})
}
