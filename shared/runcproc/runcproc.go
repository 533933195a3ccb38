package runcproc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// Exit is the exit of a process.
type Exit struct {
	// Status is the exit code, or 128+signal for a process killed by a
	// signal; proc.UnknownStatus when unknown.
	Status int
	At     time.Time
	// Known is false when the status could not be learnt (the process was
	// not our child, e.g. found again after a daemon restart).
	Known bool
}

// Waiter watches processes that runc started for their exit.
type Waiter interface {
	// Watch starts watching pid, started by a runc call made at since.
	Watch(pid int, since time.Time) (Waited, error)
}

// Waited is a process whose exit is awaited: Wait blocks until it has
// exited. One that can also call back on the exit (Notifier) costs no
// goroutine while it runs.
type Waited interface {
	Wait() Exit
}

// Notifier is a Waited that calls f with the exit once there is one (on a
// goroutine that must not be held: f starts one for anything longer).
type Notifier interface {
	Notify(f func(Exit))
}

// WaitFunc is a Waited that is a blocking function.
type WaitFunc func() Exit

// Wait calls f.
func (f WaitFunc) Wait() Exit { return f() }

// Pidfd is the Waiter over pidfds (shared/proc): the status is known for
// our children (a subreaper's re-parented container inits included).
type Pidfd struct{}

// Watch opens a pidfd for pid.
func (Pidfd) Watch(pid int, _ time.Time) (Waited, error) {
	w, err := proc.Open(pid)
	if err != nil {
		return nil, err
	}
	return WaitFor(w), nil
}

// WaitFor is the Waited (and Notifier) of a shared/proc watch.
func WaitFor(w *proc.Watch) Waited { return procWait{w} }

type procWait struct{ w *proc.Watch }

func (p procWait) Wait() Exit {
	<-p.w.Done()
	return p.exit()
}

func (p procWait) Notify(f func(Exit)) { p.w.Notify(func() { f(p.exit()) }) }

func (p procWait) exit() Exit {
	code, known, at := p.w.Status()
	return Exit{Status: code, At: at, Known: known}
}

// Error turns a failed call op of runtime (the binary's name: "runc",
// "runsc") into an error with the runtime's own message (the last error in
// its JSON log), ErrFailedPrecondition; without one, the call's error is
// wrapped.
func Error(runtime, op, logFile string, err error) error {
	if msg := LastError(logFile); msg != "" {
		return fmt.Errorf("%s %s: %s: %w", runtime, op, msg, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("%s %s: %w", runtime, op, err)
}

// LastError is the message of the last error (or fatal) entry of runc's
// JSON log, "" if none. The log is read as a stream of JSON objects, so
// that runsc's, which writes them without newlines between, reads as
// runc's does; what is not JSON (a stray line) is skipped.
func LastError(logFile string) string {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	var last string
	for rest := data; len(rest) > 0; {
		i := bytes.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		dec := json.NewDecoder(bytes.NewReader(rest[i:]))
		var e struct{ Level, Msg string }
		if err := dec.Decode(&e); err != nil {
			rest = rest[i+1:] // not an object here: look for the next one
			continue
		}
		if e.Level == "error" || e.Level == "fatal" {
			last = e.Msg
		}
		rest = rest[i+int(dec.InputOffset()):]
	}
	return last
}

// gone tells whether a runtime's error message says that the process it
// was to act on is not there any more: runc's "container not running" or
// "does not exist", runsc's "no such process".
func gone(msg string) bool {
	for _, s := range []string{"not running", "does not exist", "no such process"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// status is a process's pid and exit. It holds (not embeds) the latch, so
// that Init and Exec export only Pid, Exited and ExitStatus from it.
type status struct {
	pid  atomic.Int64
	exit exit.Latch
}

// Pid is the process's pid (0 before it runs).
func (s *status) Pid() uint32 { return uint32(s.pid.Load()) }

func (s *status) setPid(pid int) { s.pid.Store(int64(pid)) }

// Exited is closed once the process has exited and its output is drained.
func (s *status) Exited() <-chan struct{} { return s.exit.Done() }

// Notify has f called once the exit is recorded (exit.Latch.Notify).
func (s *status) Notify(f func()) { s.exit.Notify(f) }

// ExitStatus is the exit code and time, once Exited is closed.
func (s *status) ExitStatus() (uint32, time.Time) { return s.exit.ExitStatus() }

func (s *status) exited() bool { return s.exit.IsSet() }

// watch waits for the exit, drains io (may be nil), calls onExit (may be
// nil) and then records the exit. A Notifier is not waited for by a
// goroutine: one starts at the exit.
func (s *status) watch(w Waited, io *stdio.IO, onExit func(Exit)) {
	finish := func(x Exit) {
		if io != nil {
			io.Wait()
			io.Finish() // closed by Delete
		}
		if onExit != nil {
			onExit(x)
		}
		s.exit.Set(uint32(x.Status), x.At)
	}
	if n, ok := w.(Notifier); ok {
		n.Notify(func(x Exit) { go finish(x) })
		return
	}
	go func() { finish(w.Wait()) }()
}
