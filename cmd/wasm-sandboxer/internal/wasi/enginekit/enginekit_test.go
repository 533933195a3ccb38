package enginekit

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

func TestStdinReadAll(t *testing.T) {
	in := strings.Repeat("x", 3*stdinChunk+7)
	s := NewStdin(strings.NewReader(in))
	kill := make(chan struct{})
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := s.Read(buf, kill)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		out.Write(buf[:n])
	}
	if out.String() != in {
		t.Fatalf("read %d bytes, want %d", out.Len(), len(in))
	}
	if !s.Ready() || s.Buffered() != 0 {
		t.Fatal("EOF is not ready with nothing buffered")
	}
}

func TestStdinNilIsEOF(t *testing.T) {
	s := NewStdin(nil)
	if n, err := s.Read(make([]byte, 10), nil); n != 0 || err != nil {
		t.Fatalf("nil stdin read %d, %v", n, err)
	}
}

func TestStdinKillAndAbort(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	s := NewStdin(r)
	kill := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10), kill)
		got <- err
	}()
	close(kill)
	if err := <-got; !errors.Is(err, ErrKilled) {
		t.Fatalf("read after kill: %v", err)
	}
	// Abort ends the pump's read of the pipe through its read deadline:
	// the goroutine count comes back down.
	before := runtime.NumGoroutine()
	s.Abort()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() >= before {
		if time.Now().After(deadline) {
			t.Fatalf("pump still running: %d goroutines, %d before Abort", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}

func TestStdinWaitTimer(t *testing.T) {
	r, w, _ := os.Pipe()
	defer w.Close()
	defer r.Close()
	s := NewStdin(r)
	defer s.Abort()
	if got := s.Wait(nil, time.After(time.Millisecond), true); got != WakeTimer {
		t.Fatalf("wait = %v, want the timer", got)
	}
	w.Write([]byte("hi"))
	if got := s.Wait(nil, nil, true); got != WakeStdin || s.Buffered() != 2 {
		t.Fatalf("wait = %v with %d buffered", got, s.Buffered())
	}
}

type blockWriter chan struct{}

func (b blockWriter) Write(p []byte) (int, error) { <-b; return len(p), nil }

func TestWriteKill(t *testing.T) {
	var buf bytes.Buffer
	if n, err := Write(&buf, []byte("abc"), nil); n != 3 || err != nil || buf.String() != "abc" {
		t.Fatalf("write: %d %v %q", n, err, buf.String())
	}
	if n, err := Write(nil, []byte("abc"), nil); n != 3 || err != nil {
		t.Fatalf("nil writer: %d %v", n, err)
	}
	bw := make(blockWriter)
	defer close(bw)
	kill := make(chan struct{})
	close(kill)
	if _, err := Write(bw, []byte("x"), kill); !errors.Is(err, ErrKilled) {
		t.Fatalf("blocked write after kill: %v", err)
	}
	if _, err := Write(errWriter{}, []byte("x"), nil); err == nil {
		t.Fatal("writer error lost")
	}
	if _, err := Write(panicWriter{}, []byte("x"), nil); err == nil {
		t.Fatal("writer panic lost")
	}
}

type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("boom") }

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestNearLimit(t *testing.T) {
	for _, c := range []struct {
		limit, mem uint64
		want       bool
	}{
		{0, 1 << 30, false},
		{4 << 20, 4 << 20, true},
		{4 << 20, 3<<20 + 1, true},  // within a quarter
		{4 << 20, 2 << 20, false},   // half
		{1 << 30, 1010 << 20, true}, // within 16 MiB of 1 GiB
		{1 << 30, 900 << 20, false},
	} {
		if got := NearLimit(c.limit, c.mem); got != c.want {
			t.Errorf("NearLimit(%d, %d) = %v", c.limit, c.mem, got)
		}
	}
}

func TestEnvPWD(t *testing.T) {
	got := Env(&wasi.RunConfig{Env: []string{"A=1"}, Cwd: "/w"})
	if strings.Join(got, ",") != "A=1,PWD=/w" {
		t.Fatalf("env %v", got)
	}
	got = Env(&wasi.RunConfig{Env: []string{"PWD=/mine"}, Cwd: "/w"})
	if strings.Join(got, ",") != "PWD=/mine" {
		t.Fatalf("env %v", got)
	}
	if got = Env(&wasi.RunConfig{}); strings.Join(got, ",") != "PWD=/" {
		t.Fatalf("env %v", got)
	}
	k, v := SplitEnv([]string{"A=b=c", "E="})
	if strings.Join(k, ",") != "A,E" || strings.Join(v, ",") != "b=c," {
		t.Fatalf("split %v %v", k, v)
	}
}

func TestTrappedCauseFirst(t *testing.T) {
	var stderr bytes.Buffer
	r := Trapped(&stderr, "error while executing at wasm backtrace:\n    0: f\n\nCaused by:\n    wasm trap: unreachable\n\nStack backtrace:\n   0: <unknown>\n")
	if !strings.HasPrefix(r.Trap, "wasm trap: unreachable\n") || strings.Contains(r.Trap, "Stack backtrace") {
		t.Fatalf("trap %q", r.Trap)
	}
	if r.ExitCode != wasi.ExitCodeTrap || !strings.Contains(stderr.String(), r.Trap) {
		t.Fatalf("result %+v stderr %q", r, stderr.String())
	}
}

func TestTrappedNumberedCauses(t *testing.T) {
	r := Trapped(nil, "error while executing at wasm backtrace:\n    0: f\n\nCaused by:\n    0: memory fault at wasm address 0x10\n    1: wasm trap: out of bounds memory access\n")
	if !strings.HasPrefix(r.Trap, "wasm trap: out of bounds memory access\n") {
		t.Fatalf("trap %q", r.Trap)
	}
}

func TestCPUMeter(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var m CPUMeter
	m.Start()
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
	}
	if m.Read() <= 0 {
		t.Fatal("no CPU while spinning")
	}
	m.Stop()
	a := m.Read()
	for start := time.Now(); time.Since(start) < 5*time.Millisecond; {
	}
	if b := m.Read(); b != a {
		t.Fatalf("CPU counted after Stop: %v then %v", a, b)
	}
}

func TestCheckPreopens(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/file"
	os.WriteFile(f, nil, 0o600)
	for _, p := range []wasi.Preopen{{Host: dir + "/missing", Guest: "/"}, {Host: f, Guest: "/"}, {Host: dir, Guest: "rel"}} {
		if err := CheckPreopens(&wasi.RunConfig{Preopens: []wasi.Preopen{p}}); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := CheckPreopens(&wasi.RunConfig{Preopens: []wasi.Preopen{{Host: dir, Guest: "/data"}}}); err != nil {
		t.Fatal(err)
	}
}
