package controller

import (
	"context"
	"time"

	"github.com/containerd/log"
)

// Registry tells whether containerd still holds a sandbox in its metadata
// store (ctrdstore.Client). An error means it could not say.
type Registry interface {
	Knows(ctx context.Context, id string) (bool, error)
}

// WithForgotten makes the controller ask r, every interval, whether
// containerd still holds each sandbox older than interval, and shut down a
// sandbox containerd does not hold at two checks in a row, with its
// containers. Such a sandbox is what containerd forgets when it removes a
// pod whose sandboxer could not answer (a RunPodSandbox rolled back while
// the daemon restarted, then a containerd restart): nobody would ever stop
// it. containerd records a pod before it calls Create, so a sandbox it does
// not hold is not one being made; the second check lets a removal that is
// under way finish first. Nothing is shut down while containerd cannot be
// asked. 0 or a nil r: never.
func WithForgotten(r Registry, interval time.Duration) Option {
	return func(c *Controller) { c.registry, c.forgottenEvery = r, interval }
}

// reapForgotten runs the checks of WithForgotten until the daemon's life ends.
func (c *Controller) reapForgotten() {
	t := time.NewTicker(c.forgottenEvery)
	defer t.Stop()
	f := &forgetting{}
	for {
		select {
		case <-t.C:
		case <-c.life.Done():
			return
		}
		c.checkForgotten(f)
	}
}

// forgetting is what one check of reapForgotten leaves to the next.
type forgetting struct {
	// missing are the sandboxes containerd did not hold at the last check.
	missing map[string]bool
	// failing: containerd could not be asked at the last check.
	failing bool
}

// checkForgotten asks containerd about every sandbox older than the
// interval and shuts down those it does not hold now and did not hold at
// the last check.
func (c *Controller) checkForgotten(f *forgetting) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.sandboxes))
	for id := range c.sandboxes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	missing := map[string]bool{}
	for _, id := range ids {
		e, err := c.get(id)
		if err != nil {
			continue // shut down meanwhile
		}
		young := time.Since(e.state.CreatedAt) < c.forgottenEvery || e.starting != nil
		e.mu.Unlock()
		if young {
			continue
		}
		lg := log.G(c.life).WithField("sandbox_id", id)
		ctx, cancel := context.WithTimeout(c.life, 30*time.Second)
		known, err := c.registry.Knows(ctx, id)
		cancel()
		if err != nil {
			// start over once containerd answers again
			if !f.failing {
				lg.WithError(err).Warn("cannot ask containerd which sandboxes it holds: none is shut down as forgotten until it answers")
			}
			f.missing, f.failing = nil, true
			return
		}
		switch {
		case known:
		case f.missing[id]:
			c.shutdownForgotten(id)
		default:
			lg.WithField("check_interval", c.forgottenEvery.String()).Info("containerd holds no record of this sandbox: it is shut down if it still holds none at the next check")
			missing[id] = true
		}
	}
	f.missing, f.failing = missing, false
}

// shutdownForgotten shuts down a sandbox containerd no longer holds.
func (c *Controller) shutdownForgotten(id string) {
	e, err := c.get(id)
	if err != nil {
		return
	}
	defer e.mu.Unlock()
	if e.starting != nil {
		return
	}
	lg := log.G(c.life).WithField("sandbox_id", id)
	if c.containers != nil {
		lg = lg.WithField("containers", len(c.containers.List(id)))
	}
	lg.WithField("check_interval", c.forgottenEvery.String()).Warn("shutting down a sandbox containerd no longer holds (containerd removed its pod while this daemon could not answer)")
	if err := c.shutdown(log.WithLogger(c.life, lg), e); err != nil {
		lg.WithError(err).Warn("shutting down a sandbox containerd no longer holds")
	}
}
