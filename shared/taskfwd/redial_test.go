package taskfwd

import (
	"errors"
	"testing"
)

// redialConn is a connection that ends when closed or when end is called.
type redialConn struct {
	done   chan struct{}
	closed int
}

func newRedialConn() *redialConn            { return &redialConn{done: make(chan struct{})} }
func (c *redialConn) Done() <-chan struct{} { return c.done }
func (c *redialConn) end()                  { close(c.done) }
func (c *redialConn) Close() error          { c.closed++; return nil }

func TestRedial(t *testing.T) {
	var r Redial[*redialConn]
	dials := 0
	dial := func() (*redialConn, error) { dials++; return newRedialConn(), nil }
	first := newRedialConn()
	r.Set(first)
	if c, err := r.Get(dial); err != nil || c != first || dials != 0 {
		t.Fatalf("set connection: %p, %v, %d dials; want %p, no dial", c, err, dials, first)
	}
	first.end()
	second, err := r.Get(dial)
	if err != nil || second == first || dials != 1 {
		t.Fatalf("after the first ended: %p, %v, %d dials; want a new one", second, err, dials)
	}
	if c, _ := r.Get(dial); c != second || dials != 1 {
		t.Errorf("second kept: %p, %d dials", c, dials)
	}
	second.end()
	boom := errors.New("boom")
	if c, err := r.Get(func() (*redialConn, error) { return nil, boom }); c != nil || !errors.Is(err, boom) {
		t.Errorf("failed dial: %p, %v", c, err)
	}
	r.Close()
	if second.closed != 1 {
		t.Errorf("Close closed the kept connection %d times, want 1", second.closed)
	}
	r.Close()
	if second.closed != 1 {
		t.Errorf("a second Close closed it again")
	}
	if c, err := r.Get(dial); err != nil || c == second || dials != 2 {
		t.Errorf("after Close: %p, %v, %d dials; want a new dial", c, err, dials)
	}
}
