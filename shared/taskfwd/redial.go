package taskfwd

import "sync"

// Redial keeps a Guest's connection for its Conn: the one set or dialled
// last, dialled again once it has ended (its Done closed). The zero value
// holds none; it is safe for concurrent use.
type Redial[C interface {
	Done() <-chan struct{}
	Close() error
}] struct {
	mu   sync.Mutex
	conn C
	set  bool
}

// Get is the connection: the one kept while it lasts, else dial's, which
// is kept then. dial runs under Redial's lock: one dial at a time.
func (r *Redial[C]) Get(dial func() (C, error)) (C, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set {
		select {
		case <-r.conn.Done():
		default:
			return r.conn, nil
		}
	}
	c, err := dial()
	if err != nil {
		var none C
		return none, err
	}
	r.conn, r.set = c, true
	return c, nil
}

// Set keeps c (a connection the start made).
func (r *Redial[C]) Set(c C) {
	r.mu.Lock()
	r.conn, r.set = c, true
	r.mu.Unlock()
}

// Close closes the connection kept, if any, and forgets it.
func (r *Redial[C]) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set {
		_ = r.conn.Close()
		var none C
		r.conn, r.set = none, false
	}
}
