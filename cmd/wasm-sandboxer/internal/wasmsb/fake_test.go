package wasmsb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// fake is an engine for the sandboxer's unit tests. A "module" is the wasm
// magic followed by a script line; each instance follows RunConfig.Args[1:]:
//
//	echo WORDS...   write WORDS to stdout, exit 0
//	print OUT ERR N write OUT to stdout and ERR to stderr (a line each), exit N
//	exit N          exit N
//	sleep           run until killed
//	cat             copy stdin to stdout until EOF
//	grow N          grow memory to N bytes (OutOfMemory past the limit)
type fake struct {
	mu     sync.Mutex
	loads  int
	starts []*wasi.RunConfig
}

func newFake(wasi.EngineConfig) (wasi.Engine, error) { return &fake{}, nil }

func (f *fake) Name() string { return "fake" }
func (f *fake) Close() error { return nil }

func (f *fake) Load(ctx context.Context, wasm []byte) (wasi.Module, error) {
	if !bytes.HasPrefix(wasm, []byte("\x00asm\x01\x00\x00\x00")) {
		return nil, fmt.Errorf("bad version: %w", wasi.ErrInvalidModule)
	}
	f.mu.Lock()
	f.loads++
	f.mu.Unlock()
	sum := sha256.Sum256(wasm)
	return &fakeModule{f: f, digest: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

type fakeModule struct {
	f      *fake
	digest string
}

func (m *fakeModule) Digest() string      { return m.digest }
func (m *fakeModule) Info() wasi.LoadInfo { return wasi.LoadInfo{Source: wasi.LoadCompiled} }
func (m *fakeModule) Close() error        { return nil }

func (m *fakeModule) Start(ctx context.Context, cfg *wasi.RunConfig) (wasi.Instance, error) {
	m.f.mu.Lock()
	c := *cfg
	m.f.starts = append(m.f.starts, &c)
	m.f.mu.Unlock()
	in := &fakeInstance{done: make(chan struct{}), kill: make(chan struct{}), limit: uint64(cfg.MemoryLimit), mem: 65536}
	go in.run(cfg)
	return in, nil
}

type fakeInstance struct {
	done     chan struct{}
	kill     chan struct{}
	killOnce sync.Once
	mu       sync.Mutex
	res      wasi.Result
	mem      uint64
	limit    uint64
}

func (in *fakeInstance) run(cfg *wasi.RunConfig) {
	res := wasi.Result{}
	args := cfg.Args[1:]
	out := cfg.Stdout
	if out == nil {
		out = io.Discard
	}
	if len(args) > 0 {
		switch args[0] {
		case "echo":
			fmt.Fprintln(out, strings.Join(args[1:], " "))
		case "print":
			errw := cfg.Stderr
			if errw == nil {
				errw = io.Discard
			}
			fmt.Fprintln(out, args[1])
			fmt.Fprintln(errw, args[2])
			n, _ := strconv.Atoi(args[3])
			res.ExitCode = uint32(n)
		case "exit":
			n, _ := strconv.Atoi(args[1])
			res.ExitCode = uint32(n)
		case "sleep":
			<-in.kill
			res.ExitCode, res.Killed = wasi.ExitCodeKilled, true
		case "cat":
			if cfg.Stdin != nil {
				_, _ = io.Copy(out, cfg.Stdin)
			}
		case "grow":
			n, _ := strconv.ParseUint(args[1], 10, 64)
			if in.limit > 0 && n > in.limit {
				// as a Go module does when its grow is refused: exit 2
				res.ExitCode, res.OutOfMemory = 2, true
			}
		}
	}
	res.ExitedAt = time.Now()
	in.mu.Lock()
	in.res = res
	in.mu.Unlock()
	close(in.done)
}

func (in *fakeInstance) Kill()                 { in.killOnce.Do(func() { close(in.kill) }) }
func (in *fakeInstance) Done() <-chan struct{} { return in.done }
func (in *fakeInstance) Result() wasi.Result {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.res
}
func (in *fakeInstance) Stats() wasi.Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return wasi.Stats{MemoryBytes: in.mem, MemoryLimit: in.limit, CPU: time.Millisecond}
}
