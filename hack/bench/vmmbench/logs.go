package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// logLine is one logrus text line (time="…" level=… msg="…" k=v …).
type logLine struct {
	T   time.Time
	Msg string
	F   map[string]string
}

// parseLogfmt splits a logfmt line into its keys and values; quoted values
// are unquoted (containerd's msg holds escaped quotes).
func parseLogfmt(s string) map[string]string {
	f := map[string]string{}
	for i := 0; i < len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			break
		}
		key := s[i : i+eq]
		if strings.ContainsRune(key, ' ') { // not a key=value token: skip the word
			i += strings.IndexByte(s[i:], ' ') + 1
			continue
		}
		i += eq + 1
		if i < len(s) && s[i] == '"' {
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			raw := s[i:min(j+1, len(s))]
			v, err := strconv.Unquote(raw)
			if err != nil {
				v = strings.Trim(raw, `"`)
			}
			f[key] = v
			i = j + 1
			continue
		}
		j := strings.IndexByte(s[i:], ' ')
		if j < 0 {
			j = len(s) - i
		}
		f[key] = s[i : i+j]
		i += j
	}
	return f
}

// parseLogLine reads one logrus line; ok is false for other lines (the
// harness's "=== start" markers, QEMU's own messages).
func parseLogLine(s string) (logLine, bool) {
	if !strings.HasPrefix(s, "time=") {
		return logLine{}, false
	}
	f := parseLogfmt(s)
	t, err := time.Parse(time.RFC3339Nano, f["time"])
	if err != nil {
		return logLine{}, false
	}
	return logLine{T: t, Msg: f["msg"], F: f}, true
}

// logTail reads what a log file got since the last call.
type logTail struct {
	path string
	off  int64
}

// mark skips what the file holds now.
func (l *logTail) mark() error {
	st, err := os.Stat(l.path)
	if err != nil {
		return err
	}
	l.off = st.Size()
	return nil
}

// read returns the logrus lines written since mark (or the last read).
func (l *logTail) read() ([]logLine, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	// only whole lines: a line being written is read next time
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, nil
	}
	l.off += int64(end + 1)
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(b[:end+1]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if ll, ok := parseLogLine(sc.Text()); ok {
			out = append(out, ll)
		}
	}
	return out, sc.Err()
}

// filter keeps the lines whose field key is val.
func filter(lines []logLine, key, val string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.F[key] == val {
			out = append(out, l)
		}
	}
	return out
}

// find is the first line for which ok holds.
func find(lines []logLine, ok func(logLine) bool) (logLine, bool) {
	for _, l := range lines {
		if ok(l) {
			return l, true
		}
	}
	return logLine{}, false
}

// msgIs matches a message, and a stage field when given.
func msgIs(msg string, kv ...string) func(logLine) bool {
	return func(l logLine) bool {
		if l.Msg != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if l.F[kv[i]] != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// msgHas matches a message containing every part.
func msgHas(parts ...string) func(logLine) bool {
	return func(l logLine) bool {
		for _, p := range parts {
			if !strings.Contains(l.Msg, p) {
				return false
			}
		}
		return true
	}
}

// logMS is key=<Go duration> or key=<integer ms> of a line, in ms (-1: absent).
func logMS(f map[string]string, key string) float64 {
	v, ok := f[key]
	if !ok {
		return -1
	}
	if d, err := time.ParseDuration(v); err == nil {
		return ms(d)
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return n
	}
	return -1
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// conLine is one guest console line and when the host saw it.
type conLine struct {
	At   time.Time
	Text string
}

// consoleWatch follows the console of the next VM that appears in the
// sandboxer's VM run directory (one directory per pod VM, console.log in
// it): each line is stamped with the host time it was first read. The
// sandboxer writes the console through QEMU's file chardev, unbuffered, so
// a line's arrival is within the poll interval of the guest writing it.
type consoleWatch struct {
	runDir string
	every  time.Duration
	before map[string]bool

	mu    sync.Mutex
	dir   string
	lines []conLine
	done  chan struct{}
	stop  context.CancelFunc
}

// watchConsole starts following the console of the first new VM run
// directory below runDir; Stop ends it.
func watchConsole(runDir string, every time.Duration) *consoleWatch {
	w := &consoleWatch{runDir: runDir, every: every, before: map[string]bool{}, done: make(chan struct{})}
	ents, _ := os.ReadDir(runDir)
	for _, e := range ents {
		w.before[e.Name()] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go w.loop(ctx)
	return w
}

func (w *consoleWatch) loop(ctx context.Context) {
	defer close(w.done)
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var partial []byte
	buf := make([]byte, 64<<10)
	poll := func() {
		if w.dir == "" {
			ents, _ := os.ReadDir(w.runDir)
			for _, e := range ents {
				if e.IsDir() && !w.before[e.Name()] {
					w.mu.Lock()
					w.dir = filepath.Join(w.runDir, e.Name())
					w.mu.Unlock()
					break
				}
			}
			if w.dir == "" {
				return
			}
		}
		if f == nil {
			var err error
			if f, err = os.Open(filepath.Join(w.dir, "console.log")); err != nil {
				f = nil
				return
			}
		}
		for {
			n, _ := f.Read(buf)
			if n <= 0 {
				return
			}
			now := time.Now()
			partial = append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				line := strings.TrimRight(string(partial[:i]), "\r")
				partial = partial[i+1:]
				w.mu.Lock()
				w.lines = append(w.lines, conLine{At: now, Text: line})
				w.mu.Unlock()
			}
		}
	}
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		poll()
		select {
		case <-ctx.Done():
			poll()
			return
		case <-t.C:
		}
	}
}

// Stop ends the watch and returns the VM's run directory and its lines.
func (w *consoleWatch) Stop() (string, []conLine) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dir, w.lines
}

// agentLine is the first console line of the agent with message msg.
func agentLine(lines []conLine, msg string) (conLine, logLine, bool) {
	for _, l := range lines {
		i := strings.Index(l.Text, "time=")
		if i < 0 || !strings.Contains(l.Text, `msg="`+msg+`"`) {
			continue
		}
		ll, ok := parseLogLine(l.Text[i:])
		if ok && ll.Msg == msg {
			return l, ll, true
		}
	}
	return conLine{}, logLine{}, false
}

// pathWatch notes when paths first exist (polled).
type pathWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time
	done chan struct{}
	stop context.CancelFunc
}

func watchPaths(every time.Duration, paths ...string) *pathWatch {
	w := &pathWatch{seen: map[string]time.Time{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			now := time.Now()
			left := 0
			for _, p := range paths {
				w.mu.Lock()
				_, ok := w.seen[p]
				w.mu.Unlock()
				if ok {
					continue
				}
				if _, err := os.Lstat(p); err == nil {
					w.mu.Lock()
					w.seen[p] = now
					w.mu.Unlock()
				} else {
					left++
				}
			}
			if left == 0 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Stop ends the watch and returns when each path was first seen.
func (w *pathWatch) Stop() map[string]time.Time {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}
