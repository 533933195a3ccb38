package fdstore

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// serve serves st on a fresh socket, as the keeper does, and returns its
// path.
func serve(t *testing.T, st *Store) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fds.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go st.ServeConn(ctx, c)
		}
	}()
	t.Cleanup(func() {
		cancel()
		l.Close()
		st.Close()
	})
	return path
}

// pipe is a pipe whose write end is held (or not) by the store: the test
// keeps the read end and closes its own write end once handed over.
type pipe struct {
	r, w *os.File
}

func newPipe(t *testing.T) *pipe {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &pipe{r: r, w: w}
}

// hup tells whether the pipe's reader sees the end: no writer left.
func (p *pipe) hup(t *testing.T) bool {
	t.Helper()
	rc, err := p.r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var hup bool
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 0); err != nil {
			t.Error(err)
		}
		hup = fds[0].Revents&unix.POLLHUP != 0
	}); err != nil {
		t.Fatal(err)
	}
	return hup
}

// held hands the pipe's write end to c under key and closes the test's.
func (p *pipe) held(t *testing.T, c *Client, key string) {
	t.Helper()
	if err := c.Hold(key, p.w); err != nil {
		t.Fatalf("hold %s: %v", key, err)
	}
	p.w.Close()
}

func expectHup(t *testing.T, name string, p *pipe, want bool) {
	t.Helper()
	if got := p.hup(t); got != want {
		t.Errorf("%s: reader sees the end: %v, want %v", name, got, want)
	}
}

func TestHoldReleaseRetain(t *testing.T) {
	st := NewStore(0)
	c := NewClient(serve(t, st))
	a, b, d := newPipe(t), newPipe(t), newPipe(t)
	a.held(t, c, "ctr/-/stdout")
	b.held(t, c, "ctr/-/stderr")
	d.held(t, c, "ctr/exec1/stdin")
	for _, p := range []*pipe{a, b, d} {
		expectHup(t, "held", p, false)
	}
	if got, err := c.List(); err != nil || !slices.Equal(got, []string{"ctr/-/stderr", "ctr/-/stdout", "ctr/exec1/stdin"}) {
		t.Errorf("list: %v %v", got, err)
	}

	if err := c.Release("ctr/-/stdout", "never/held/key"); err != nil {
		t.Fatal(err)
	}
	expectHup(t, "released", a, true)
	expectHup(t, "still held", b, false)
	if err := c.Release("ctr/-/stdout"); err != nil {
		t.Errorf("release twice: %v", err)
	}

	if err := c.Retain([]string{"ctr/exec1/stdin", "unknown"}); err != nil {
		t.Fatal(err)
	}
	expectHup(t, "not retained", b, true)
	expectHup(t, "retained", d, false)
	if got := st.Keys(); !slices.Equal(got, []string{"ctr/exec1/stdin"}) {
		t.Errorf("keys after retain: %v", got)
	}
	if got := c.Held(); !slices.Equal(got, []string{"ctr/exec1/stdin"}) {
		t.Errorf("held after retain: %v", got)
	}
	if err := c.Retain(nil); err != nil {
		t.Fatal(err)
	}
	expectHup(t, "retain none", d, true)
	if st.Len() != 0 {
		t.Errorf("%d held after retaining none", st.Len())
	}
}

// A Hold under a key held already replaces it: the earlier descriptor is
// closed, the new one held.
func TestHoldReplaces(t *testing.T) {
	st := NewStore(0)
	c := NewClient(serve(t, st))
	first, second := newPipe(t), newPipe(t)
	first.held(t, c, "k")
	second.held(t, c, "k")
	expectHup(t, "replaced", first, true)
	expectHup(t, "replacing", second, false)
	if st.Len() != 1 {
		t.Errorf("%d held, want 1", st.Len())
	}
}

// Beyond its limit the store refuses new keys (and closes what came with
// them), but still replaces held ones.
func TestLimit(t *testing.T) {
	st := NewStore(2)
	c := NewClient(serve(t, st))
	newPipe(t).held(t, c, "a")
	newPipe(t).held(t, c, "b")
	over := newPipe(t)
	err := c.Hold("c", over.w)
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("hold beyond the limit: %v, want ResourceExhausted", err)
	}
	over.w.Close()
	expectHup(t, "refused", over, true)
	repl := newPipe(t)
	repl.held(t, c, "a")
	expectHup(t, "replacing at the limit", repl, false)
	if got := c.Held(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("held %v", got)
	}
}

func TestBadKeys(t *testing.T) {
	for _, key := range []string{"", strings.Repeat("k", MaxKeyLen+1), "a b", "a\nb", "a\x00b", "a\tb", "é", "a\x7fb"} {
		if err := ValidateKey(key); !errdefs.IsInvalidArgument(err) {
			t.Errorf("key %q: %v, want InvalidArgument", key, err)
		}
	}
	for _, key := range []string{"k", strings.Repeat("k", MaxKeyLen), "ctr-1/exec.2/stdout", "~!#"} {
		if err := ValidateKey(key); err != nil {
			t.Errorf("key %q: %v", key, err)
		}
	}
	st := NewStore(0)
	path := serve(t, st)
	c := NewClient(path)
	p := newPipe(t)
	if err := c.Hold("a b", p.w); !errdefs.IsInvalidArgument(err) {
		t.Errorf("client hold of a bad key: %v", err)
	}
	// the store checks too: a request of another client
	conn := dial(t, path)
	if err := writeFrame(conn, request(opHold, []string{"a b"}), int(fdOf(t, p.w))); err != nil {
		t.Fatal(err)
	}
	p.w.Close()
	if err := readReply(t, conn); !errdefs.IsInvalidArgument(err) {
		t.Errorf("store hold of a bad key: %v", err)
	}
	expectHup(t, "refused", p, true)
	if err := c.Release("ok", "not ok"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("release of a bad key: %v", err)
	}
	if err := c.Retain([]string{"not ok"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("retain of a bad key: %v", err)
	}
	if st.Len() != 0 {
		t.Errorf("%d held", st.Len())
	}
}

func dial(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// fdOf is f's descriptor, for a raw request (the test's files only).
func fdOf(t *testing.T, f *os.File) uintptr {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	_ = rc.Control(func(d uintptr) { fd = d })
	return fd
}

// readReply reads a reply on a raw connection: nil for OK.
func readReply(t *testing.T, c *net.UnixConn) error {
	t.Helper()
	payload, fds, err := readFrame(c)
	closeFDs(fds)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	status, rest, _ := strings.Cut(string(payload), "\n")
	if status == replyOK {
		return nil
	}
	return errOf(strings.TrimPrefix(status, replyErr+" "), rest)
}

// Malformed requests get an error and lose the descriptors they carried;
// the connection serves on.
func TestBadRequests(t *testing.T) {
	st := NewStore(0)
	conn := dial(t, serve(t, st))
	p1, p2 := newPipe(t), newPipe(t)
	fd1, fd2 := int(fdOf(t, p1.w)), int(fdOf(t, p2.w))
	for _, r := range []struct {
		name string
		req  string
		fds  []int
		want func(error) bool
	}{
		{"hold without a descriptor", "HOLD\nk", nil, errdefs.IsInvalidArgument},
		{"hold of two keys", "HOLD\nk\nl", []int{fd1}, errdefs.IsInvalidArgument},
		{"hold with two descriptors", "HOLD\nk", []int{fd1, fd2}, errdefs.IsInvalidArgument},
		{"release with a descriptor", "RELEASE\nk", []int{fd1}, errdefs.IsInvalidArgument},
		{"unknown operation", "FORGET\nk", nil, errdefs.IsNotImplemented},
		{"empty key line", "RELEASE\n", nil, errdefs.IsInvalidArgument},
	} {
		payload := []byte(r.req)
		buf := make([]byte, headerLen+len(payload))
		buf[3] = byte(len(payload))
		copy(buf[headerLen:], payload)
		var oob []byte
		if len(r.fds) > 0 {
			oob = unix.UnixRights(r.fds...)
		}
		if _, _, err := conn.WriteMsgUnix(buf, oob, nil); err != nil {
			t.Fatal(err)
		}
		if err := readReply(t, conn); !r.want(err) {
			t.Errorf("%s: %v", r.name, err)
		}
	}
	p1.w.Close()
	p2.w.Close()
	expectHup(t, "descriptor of a refused request", p1, true)
	expectHup(t, "descriptor of a refused request", p2, true)
	if st.Len() != 0 {
		t.Errorf("%d held", st.Len())
	}
	// the same connection still serves
	if _, _, err := conn.WriteMsgUnix(append([]byte{0, 0, 0, 4}, "LIST"...), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := readReply(t, conn); err != nil {
		t.Errorf("list after errors: %v", err)
	}
}

// A frame larger than the bound is refused, and the connection closed.
func TestFrameTooLarge(t *testing.T) {
	conn := dial(t, serve(t, NewStore(0)))
	if _, err := conn.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := readReply(t, conn); !errdefs.IsInvalidArgument(err) {
		t.Errorf("too large a frame: %v", err)
	}
	if _, _, err := readFrame(conn); err == nil {
		t.Error("the connection serves on after an oversized frame")
	}
}

// A large RETAIN (about 2 MiB of keys) goes through as one frame.
func TestLargeRetain(t *testing.T) {
	st := NewStore(0)
	c := NewClient(serve(t, st))
	keep := newPipe(t)
	keep.held(t, c, "keep")
	keys := []string{"keep"}
	for i := 0; len(keys) < 10000; i++ {
		keys = append(keys, strings.Repeat("x", 200)+"/"+strings.Repeat("y", i%50)+"/"+string(rune('a'+i%26)))
	}
	if err := c.Retain(keys); err != nil {
		t.Fatal(err)
	}
	expectHup(t, "retained", keep, false)
}

// What a daemon held stays held when its connection dies: with a request
// answered, and with one cut halfway.
func TestDeadConnectionKeepsFDs(t *testing.T) {
	st := NewStore(0)
	path := serve(t, st)
	p := newPipe(t)
	conn := dial(t, path)
	if err := writeFrame(conn, request(opHold, []string{"k"}), int(fdOf(t, p.w))); err != nil {
		t.Fatal(err)
	}
	p.w.Close()
	if err := readReply(t, conn); err != nil {
		t.Fatal(err)
	}
	conn.Close() // the daemon dies
	cut := dial(t, path)
	if _, err := cut.Write([]byte{0, 0, 0, 40, 'R', 'E'}); err != nil {
		t.Fatal(err)
	}
	cut.Close()
	time.Sleep(50 * time.Millisecond)
	expectHup(t, "held by a dead connection", p, false)
	if got := st.Keys(); !slices.Equal(got, []string{"k"}) {
		t.Errorf("keys %v", got)
	}
}

// RetainHeld closes what an earlier daemon held and this one did not hold
// again.
func TestRetainHeld(t *testing.T) {
	st := NewStore(0)
	path := serve(t, st)
	before, after := NewClient(path), NewClient(path)
	gone, again, old := newPipe(t), newPipe(t), newPipe(t)
	gone.held(t, before, "gone")
	old.held(t, before, "again")
	again.held(t, after, "again") // recovered: held anew, replacing
	fresh := newPipe(t)
	fresh.held(t, after, "fresh")
	if err := after.RetainHeld(); err != nil {
		t.Fatal(err)
	}
	expectHup(t, "gone while no daemon ran", gone, true)
	expectHup(t, "replaced", old, true)
	expectHup(t, "held again", again, false)
	expectHup(t, "new", fresh, false)
	if got := after.Held(); !slices.Equal(got, []string{"again", "fresh"}) {
		t.Errorf("held %v", got)
	}
	if err := after.Release("again"); err != nil {
		t.Fatal(err)
	}
	if got := after.Held(); !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("held after release %v", got)
	}
}

// Hold leaves the caller's file as it was: open, and non-blocking (os.Pipe
// files are), so that closing it still interrupts a blocked write.
func TestHoldKeepsCallersFile(t *testing.T) {
	c := NewClient(serve(t, NewStore(0)))
	p := newPipe(t)
	if err := c.Hold("k", p.w); err != nil {
		t.Fatal(err)
	}
	flags, err := unix.FcntlInt(fdOf(t, p.w), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		t.Error("the caller's file was put in blocking mode")
	}
	if _, err := p.w.Write([]byte("x")); err != nil {
		t.Errorf("the caller's file: %v", err)
	}
}

func TestClosedStore(t *testing.T) {
	st := NewStore(0)
	c := NewClient(serve(t, st))
	p := newPipe(t)
	p.held(t, c, "k")
	st.Close()
	expectHup(t, "closed store", p, true)
	if err := c.Hold("k", newPipe(t).w); !errdefs.IsUnavailable(err) {
		t.Errorf("hold in a closed store: %v", err)
	}
}

func TestNoStore(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	for name, err := range map[string]error{
		"hold":    c.Hold("k", newPipe(t).w),
		"release": c.Release("k"),
		"retain":  c.Retain(nil),
	} {
		if !errdefs.IsUnavailable(err) {
			t.Errorf("%s without a store: %v, want Unavailable", name, err)
		}
	}
	if _, err := c.List(); !errdefs.IsUnavailable(err) {
		t.Errorf("list without a store: %v", err)
	}
	if len(c.Held()) != 0 {
		t.Errorf("held %v", c.Held())
	}
}

func TestNilClient(t *testing.T) {
	var c *Client
	for name, err := range map[string]error{
		"hold":        c.Hold("k", os.Stdout),
		"release":     c.Release("k"),
		"retain":      c.Retain([]string{"k"}),
		"retain held": c.RetainHeld(),
	} {
		if err != nil {
			t.Errorf("nil client %s: %v", name, err)
		}
	}
	if keys, err := c.List(); keys != nil || err != nil {
		t.Errorf("nil client list: %v %v", keys, err)
	}
	if c.Held() != nil {
		t.Error("nil client holds something")
	}
}

func TestErrorCodes(t *testing.T) {
	for _, e := range []error{errdefs.ErrInvalidArgument, errdefs.ErrResourceExhausted, errdefs.ErrNotImplemented, errdefs.ErrUnavailable} {
		got := errOf(codeOf(e), "msg: "+e.Error())
		if !errors.Is(got, e) {
			t.Errorf("%v comes back as %v", e, got)
		}
		if strings.Count(got.Error(), e.Error()) != 1 {
			t.Errorf("%q repeats its category", got)
		}
	}
	if got := errOf(codeOf(errors.New("boom")), "boom"); got == nil || !strings.Contains(got.Error(), "boom") {
		t.Errorf("an error of no category comes back as %v", got)
	}
}
