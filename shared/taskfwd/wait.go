package taskfwd

import (
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// waitExit learns the process's exit from a Task.Wait in the guest
// (Forwarding.WaitExits), kept in flight until the guest answers: again on
// a new connection after a broken one. A guest that answers with another
// error is asked again after a pause; one that no longer knows the process
// (NotFound) lost it. It ends when the process is deleted or lost, the
// guest is gone (the pump then ends every process of it) or the daemon
// ends (the process runs on for the next daemon).
func (p *process) waitExit() {
	for {
		err := withConn(p.ctx, p.c.g, func(conn Conn) error {
			r, err := conn.Task().Wait(withNamespace(p.ctx, p.c.ns), &taskapi.WaitRequest{ID: p.c.id, ExecID: p.execID})
			if err != nil {
				return err
			}
			p.exited(r.GetExitStatus(), timeOf(r.GetExitedAt()))
			return nil
		})
		switch {
		case err == nil, p.ctx.Err() != nil, gone(p.c.g), p.deleting.Load():
			return
		case errdefs.IsNotFound(err):
			p.logger().WithError(err).Warn("the guest no longer knows the process: reporting it lost")
			p.markLost()
			return
		}
		p.logger().WithError(err).Warn("waiting for the process in the guest: asking again")
		t := time.NewTimer(retryMax)
		select {
		case <-p.ctx.Done():
		case <-p.c.g.Exited():
		case <-t.C:
		}
		t.Stop()
	}
}
