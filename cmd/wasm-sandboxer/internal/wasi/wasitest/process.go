package wasitest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

const helperEnv = "MAGNETAR_WASITEST_CACHE_DIR"

// CacheAcrossProcesses proves that the compiled-module cache survives a
// daemon restart: it runs the test binary again, twice, as a helper that
// loads a module from the same cache dir and prints how Load found it; the
// first compiles, the second must not. Call it from a top-level test of the
// engine's package: the helper re-runs that very test.
func CacheAcrossProcesses(t *testing.T, newEngine func(t *testing.T, cfg wasi.EngineConfig) wasi.Engine) {
	if dir := os.Getenv(helperEnv); dir != "" {
		e := newEngine(t, wasi.EngineConfig{CacheDir: dir})
		defer e.Close()
		m, err := e.Load(context.Background(), wasm(t, watHello))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		inst, err := m.Start(context.Background(), &wasi.RunConfig{Args: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		expectExit(t, waitDone(t, inst), 0, "")
		fmt.Printf("LOAD %s %d\n", m.Info().Source, m.Info().Duration.Microseconds())
		return
	}
	dir := t.TempDir()
	for _, want := range []wasi.LoadSource{wasi.LoadCompiled, wasi.LoadDisk} {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		var got string
		var us int64
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "LOAD "); ok {
				fmt.Sscan(l, &got, &us)
			}
		}
		if got != string(want) {
			t.Fatalf("process %s: load %q, want %q\n%s", want, got, want, out)
		}
		t.Logf("new process: %s in %d µs", got, us)
	}
}
