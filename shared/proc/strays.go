package proc

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// watched are the pids an open Watch will reap: ReapStrays leaves them.
var watched = struct {
	sync.Mutex
	pids map[int]struct{}
}{pids: map[int]struct{}{}}

func claim(pid int) {
	watched.Lock()
	watched.pids[pid] = struct{}{}
	watched.Unlock()
}

func release(pid int) {
	watched.Lock()
	delete(watched.pids, pid)
	watched.Unlock()
}

func isWatched(pid int) bool {
	watched.Lock()
	defer watched.Unlock()
	_, ok := watched.pids[pid]
	return ok
}

// ReapStrays reaps, every interval until ctx ends, the zombie children of
// this process that nobody will: not watched by a Watch, and a zombie
// already at the previous scan (an exec.Cmd or a Watch being set up
// reaps its child within moments; a stray stays). A daemon that is a child
// subreaper inherits every orphan below it: the processes of a container
// whose record went while they still ran, a runtime's helpers. Unreaped,
// each keeps its pid, and one inside a pod's PID namespace keeps the
// namespace's init from ever finishing its exit. reaped, if not nil, is
// told each pid reaped and its status (128+n for a signal n).
func ReapStrays(ctx context.Context, every time.Duration, reaped func(pid, status int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen := map[int]uint64{} // zombie pid -> its start time, at the last scan
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen = reapStrays(seen, reaped)
	}
}

// reapStrays is one scan: it reaps the unwatched zombie children that seen
// holds with the same start time, and returns the unwatched zombies now.
func reapStrays(seen map[int]uint64, reaped func(pid, status int)) map[int]uint64 {
	now := map[int]uint64{}
	for _, pid := range childPids() {
		st, err := ReadStat(pid)
		if err != nil || st.State != "Z" || isWatched(pid) {
			continue
		}
		if start, ok := seen[pid]; !ok || start != st.StartTime {
			now[pid] = st.StartTime
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got != pid {
			continue
		}
		if reaped != nil {
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			reaped(pid, code)
		}
	}
	return now
}
