package fdstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// FuzzHandle: whatever request text arrives (with or without a
// descriptor), the store holds only valid keys, a descriptor sent is either
// held or closed (never leaked), a request it refuses leaves what it holds
// unchanged, and a LIST answer frames back to the keys held.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{"HOLD\nvm.tap0", "HOLD\nk", "HOLD", "HOLD\na\nb", "HOLD\nbad key", "RELEASE\nkept\nother", "RETAIN\nkept",
		"RETAIN", "LIST", "LIST\nx", "NOPE\nx", "", "\n\n", "HOLD\n" + strings.Repeat("k", MaxKeyLen+1), "RELEASE\nkept\n\x00"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, req string, withFD bool) {
		s := NewStore(4)
		defer s.Close()
		kept, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.hold("kept", kept); err != nil {
			t.Fatal(err)
		}
		before := s.Keys()
		var fds []int
		fd := -1
		if withFD {
			if fd, err = unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				t.Fatal(err)
			}
			fds = []int{fd}
		}
		keys, err := s.handle(context.Background(), []byte(req), fds)
		held := s.Keys()
		for _, k := range held {
			if ValidateKey(k) != nil {
				t.Fatalf("request %q: the store holds key %q", req, k)
			}
		}
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) && !errors.Is(err, errdefs.ErrResourceExhausted) {
				t.Fatalf("request %q: error %v has no category", req, err)
			}
			if !slices.Equal(held, before) {
				t.Fatalf("request %q refused (%v), but the store went from %q to %q", req, err, before, held)
			}
		}
		if fd >= 0 {
			s.mu.Lock()
			isHeld := false
			for _, h := range s.fds {
				isHeld = isHeld || h == fd
			}
			s.mu.Unlock()
			_, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if isHeld == (ferr != nil) {
				t.Fatalf("request %q: descriptor held %v, open %v", req, isHeld, ferr == nil)
			}
		}
		if keys != nil {
			op, got := parseRequest(reply(keys, nil))
			if op != replyOK || !slices.Equal(got, keys) || !slices.Equal(keys, held) {
				t.Fatalf("LIST %q: answer %q frames back as %q %q", held, keys, op, got)
			}
		}
	})
}
