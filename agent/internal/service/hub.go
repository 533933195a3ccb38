package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// Hub owns the in-guest stdio FIFOs of agentapi's stdio contract and copies
// between them and the Streams service.
type Hub struct {
	root string
	mu   sync.Mutex
	outs map[key]*output
	ins  map[key]*input
	// dummies are write ends held from Prepare until the process started,
	// so that a reader attached early never sees EOF before the process
	// holds its own write end.
	dummies map[procKey][]*os.File
}

type procKey struct{ id, exec string }

type key struct {
	procKey
	stream string
}

type output struct {
	path string
	f    *os.File

	ctl    sync.Mutex // guards cancel
	cancel context.CancelFunc

	read    sync.Mutex // held by the attached reader; guards pending, eof
	pending []byte
	eof     bool
}

type input struct {
	path   string
	wmu    sync.Mutex // held by the attached writer
	mu     sync.Mutex // guards f, closed
	f      *os.File   // nil once closed
	closed bool
}

// NewHub keeps its FIFOs under root (agentapi.IORoot in the guest).
func NewHub(root string) *Hub {
	return &Hub{root: root, outs: map[key]*output{}, ins: map[key]*input{}, dummies: map[procKey][]*os.File{}}
}

// path is agentapi.StdioPath under the hub's root.
func (h *Hub) path(id, exec, stream string) string {
	return filepath.Join(h.root, strings.TrimPrefix(agentapi.StdioPath(id, exec, stream), agentapi.IORoot))
}

// Check validates that every path of cfg is the contract's path for its
// stream (or empty).
func (h *Hub) Check(id, exec string, cfg stdio.Config) error {
	for _, s := range []struct{ name, v string }{{agentapi.Stdin, cfg.Stdin}, {agentapi.Stdout, cfg.Stdout}, {agentapi.Stderr, cfg.Stderr}} {
		if s.v == "" {
			continue
		}
		if want := h.path(id, exec, s.name); s.v != want {
			return fmt.Errorf("%s %q: the agent only accepts %q or empty (stdio goes through the Streams service, see agentapi): %w", s.name, s.v, want, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Prepare creates the FIFOs of cfg and opens the agent's ends. On error
// nothing is left.
func (h *Hub) Prepare(id, exec string, cfg stdio.Config) (retErr error) {
	if err := h.Check(id, exec, cfg); err != nil {
		return err
	}
	pk := procKey{id, exec}
	defer func() {
		if retErr != nil {
			h.Release(id, exec)
		}
	}()
	for _, s := range []struct{ name, v string }{{agentapi.Stdin, cfg.Stdin}, {agentapi.Stdout, cfg.Stdout}, {agentapi.Stderr, cfg.Stderr}} {
		if s.v == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(s.v), 0o700); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		_ = os.Remove(s.v) // a leftover of an earlier process with this id
		if err := unix.Mkfifo(s.v, 0o600); err != nil {
			return fmt.Errorf("%s: mkfifo %s: %w", s.name, s.v, err)
		}
		k := key{pk, s.name}
		if s.name == agentapi.Stdin {
			f, err := openFifo(s.v, unix.O_RDWR)
			if err != nil {
				return fmt.Errorf("stdin: %w", err)
			}
			h.mu.Lock()
			h.ins[k] = &input{path: s.v, f: f}
			h.mu.Unlock()
			continue
		}
		f, err := openFifo(s.v, unix.O_RDONLY)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		h.mu.Lock()
		h.outs[k] = &output{path: s.v, f: f}
		h.mu.Unlock()
		d, err := openFifo(s.v, unix.O_WRONLY)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		h.mu.Lock()
		h.dummies[pk] = append(h.dummies[pk], d)
		h.mu.Unlock()
	}
	return nil
}

// openFifo opens a FIFO non-blocking so that the runtime poller serves it
// (and read deadlines work).
func openFifo(p string, mode int) (*os.File, error) {
	fd, err := unix.Open(p, mode|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Started drops the placeholder writers once the process holds its own.
func (h *Hub) Started(id, exec string) {
	h.mu.Lock()
	ds := h.dummies[procKey{id, exec}]
	delete(h.dummies, procKey{id, exec})
	h.mu.Unlock()
	for _, d := range ds {
		d.Close()
	}
}

// Release closes and removes the FIFOs of one process. Idempotent.
func (h *Hub) Release(id, exec string) {
	h.Started(id, exec)
	pk := procKey{id, exec}
	h.mu.Lock()
	var outs []*output
	var ins []*input
	for _, s := range []string{agentapi.Stdout, agentapi.Stderr} {
		if o, ok := h.outs[key{pk, s}]; ok {
			outs = append(outs, o)
			delete(h.outs, key{pk, s})
		}
	}
	if in, ok := h.ins[key{pk, agentapi.Stdin}]; ok {
		ins = append(ins, in)
		delete(h.ins, key{pk, agentapi.Stdin})
	}
	h.mu.Unlock()
	for _, o := range outs {
		o.f.Close() // ends an attached reader
		_ = os.Remove(o.path)
	}
	for _, in := range ins {
		in.close()
		_ = os.Remove(in.path)
	}
	_ = os.Remove(filepath.Dir(h.path(id, exec, agentapi.Stdout)))
}

// ReleaseContainer releases every process of a container and its directory.
func (h *Hub) ReleaseContainer(id string) {
	h.mu.Lock()
	procs := map[procKey]bool{}
	for k := range h.outs {
		if k.id == id {
			procs[k.procKey] = true
		}
	}
	for k := range h.ins {
		if k.id == id {
			procs[k.procKey] = true
		}
	}
	for k := range h.dummies {
		if k.id == id {
			procs[k] = true
		}
	}
	h.mu.Unlock()
	for pk := range procs {
		h.Release(pk.id, pk.exec)
	}
	_ = os.RemoveAll(filepath.Join(h.root, id))
}

func (in *input) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.f != nil {
		in.f.Close()
		in.f = nil
	}
	in.closed = true
}

var errNoStream = errors.New("no such stream")

func (h *Hub) lookupOut(id, exec, stream string) (*output, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.outs[key{procKey{id, exec}, stream}]
	if !ok {
		return nil, fmt.Errorf("%s of %s: %w: %w", stream, procName(id, exec), errNoStream, errdefs.ErrNotFound)
	}
	return o, nil
}

// chunkSize is the largest Output message.
const chunkSize = 32 << 10

// Output copies a process's stdout or stderr to send until EOF (nil) or
// until ctx ends, send fails or another Output for the same stream takes
// over (an error). A chunk send could not deliver is kept for the next
// reader.
func (h *Hub) Output(ctx context.Context, id, exec, stream string, send func([]byte) error) error {
	o, err := h.lookupOut(id, exec, stream)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	o.ctl.Lock()
	if o.cancel != nil {
		o.cancel() // preempt the reader of a connection that went away
	}
	o.cancel = func() {
		cancel(fmt.Errorf("%s of %s: another reader attached: %w", stream, procName(id, exec), errdefs.ErrAborted))
	}
	o.ctl.Unlock()
	o.read.Lock()
	defer o.read.Unlock()
	buf := make([]byte, chunkSize)
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		chunk := o.pending
		o.pending = nil
		if chunk == nil {
			if o.eof {
				return nil
			}
			fired := make(chan struct{})
			stop := context.AfterFunc(ctx, func() {
				_ = o.f.SetReadDeadline(time.Unix(1, 0))
				close(fired)
			})
			n, err := o.f.Read(buf)
			if !stop() {
				<-fired
			}
			_ = o.f.SetReadDeadline(time.Time{})
			if n > 0 {
				chunk = append([]byte(nil), buf[:n]...)
			}
			switch {
			case err == nil:
			case errors.Is(err, io.EOF):
				o.eof = true
			case errors.Is(err, os.ErrDeadlineExceeded):
			case errors.Is(err, os.ErrClosed):
				return fmt.Errorf("%s of %s: process deleted: %w", stream, procName(id, exec), errdefs.ErrNotFound)
			default:
				return fmt.Errorf("%s of %s: %w", stream, procName(id, exec), err)
			}
			if chunk == nil {
				continue
			}
		}
		if err := send(chunk); err != nil {
			o.pending = chunk
			return err
		}
	}
}

// Input writes what recv returns to a process's stdin until recv returns
// io.EOF (stdin is closed: the process reads EOF) or another error (stdin
// stays open for the next Input). It returns the bytes written.
func (h *Hub) Input(ctx context.Context, id, exec string, recv func() ([]byte, error)) (uint64, error) {
	h.mu.Lock()
	in, ok := h.ins[key{procKey{id, exec}, agentapi.Stdin}]
	h.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("stdin of %s: %w: %w", procName(id, exec), errNoStream, errdefs.ErrNotFound)
	}
	in.wmu.Lock() // one Input at a time
	defer in.wmu.Unlock()
	in.mu.Lock()
	closed := in.closed
	in.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("stdin of %s is closed: %w", procName(id, exec), errdefs.ErrFailedPrecondition)
	}
	var n uint64
	for {
		data, err := recv()
		if errors.Is(err, io.EOF) {
			in.close()
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if len(data) == 0 {
			continue
		}
		in.mu.Lock()
		f := in.f
		in.mu.Unlock()
		if f == nil {
			return n, fmt.Errorf("stdin of %s is closed: %w", procName(id, exec), errdefs.ErrFailedPrecondition)
		}
		k, err := f.Write(data)
		n += uint64(k)
		if err != nil {
			return n, fmt.Errorf("stdin of %s: %w", procName(id, exec), err)
		}
	}
}

// CloseStdin closes a process's stdin from the agent's side (CloseIO).
func (h *Hub) CloseStdin(id, exec string) {
	h.mu.Lock()
	in, ok := h.ins[key{procKey{id, exec}, agentapi.Stdin}]
	h.mu.Unlock()
	if ok {
		in.close()
	}
}

func procName(id, exec string) string {
	if exec == "" {
		return "container " + id
	}
	return "exec " + exec + " of container " + id
}
