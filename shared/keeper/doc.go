// Package keeper lets a sandboxer restart without containerd noticing.
//
// containerd 2.x treats the end of a task API connection as the death of the
// "shim" behind it: it runs the runtime binary's `delete` and forgets the
// task. A sandboxer serves the tasks of every pod from one daemon, so a daemon
// restart (an upgrade, a crash, kill -9) would take every container of the
// node with it.
//
// The keeper is a small process, one per sandboxer per node (never per pod),
// started detached by the daemon and reused across daemon restarts. It owns
// the task socket containerd dials and every connection containerd opens on
// it, and bridges each connection to the daemon's private backend socket by
// ttrpc frame. It keeps the request frames that have no response yet; when
// the daemon goes away it holds containerd's connections open, dials the
// backend again as it comes back, and replays the pending requests (Wait,
// State, Kill … are safe to repeat) on the new connection, so that
// containerd sees slow answers, not a dead runtime. If the daemon does not
// come back within a bound (Options.MaxWait, five minutes by default), the
// keeper closes the connections and containerd cleans up as it would for a
// dead shim. It relays the Sandbox API socket too, as a byte stream (Serve,
// ServeStream; Run serves both).
//
// # Descriptors
//
// The keeper also serves a descriptor store (shared/fdstore; ServeFDs) on a
// third socket next to the others (Config.FDSocket, 0600): the daemon holds
// there a write end of every containerd output FIFO it relays into, and a
// read end of every stdin FIFO it reads, so that containerd's readers see
// no EOF and its writers no EPIPE while no daemon runs (see shared/taskfwd).
// The keeper only keeps them open. Its connections are the daemon's: they
// and the descriptors held are no containerd connection for the rules
// below.
//
// # Ownership
//
// The keeper that owns a sandboxer's sockets is the one its pid file names
// (shared/daemon: <task socket dir>/<name>-keeper.pid). Run listens on both
// sockets first, then writes the pid file, so a pid file naming a live keeper
// means its sockets are up; the daemon waits for exactly that when it starts
// a keeper, and reuses a keeper it finds so. A daemon that finds none (no pid
// file, a dead pid, sockets gone) removes the socket paths and starts a new
// keeper, which binds new sockets there and writes its own pid.
//
// # The keeper never outlives its purpose
//
// Run checks every second whether its keeper still has a purpose, and ends
// it when it has not:
//
//   - Replaced. A socket path it listens on is gone or is now another socket
//     (another inode: the path was unlinked and bound again; its own bound
//     socket keeps its inode alive, so no later socket can reuse it), or the
//     pid file names another process. No containerd can reach this keeper
//     any more, so it stops accepting at once. The connections it already
//     holds keep being relayed to the same daemon: they are containerd's live
//     task connections, and cutting them would make containerd delete the
//     tasks on them. The keeper exits when the last one has ended, at once if
//     it holds none. It never touches the paths again: they are the newer
//     keeper's (Go would unlink a listener's path on Close; Run turns that
//     off). A pid file that is missing or unreadable says nothing by itself;
//     the sockets decide. The descriptors its store holds are closed at
//     once: the daemon holds them in the newer keeper (its recovery holds
//     again what it relays), and a write end left here would keep
//     containerd's reader from the EOF of an output that ends, which the
//     daemon releases in the newer keeper only.
//
//   - Idle. For IdleTimeout (DefaultIdleTimeout, five minutes) it held no
//     containerd connection, on either socket, and no daemon listened behind
//     it (Run dials the task backend, then the API backend, each second while
//     it holds no connection). It then removes its sockets and pid file (when
//     still its own) and exits; the next daemon starts a new keeper.
//     Descriptors held do not keep it: they serve containerd's readers and
//     writers of the stdio of running tasks, and a containerd that has such
//     tasks holds their task connections, which keep the keeper anyway (and
//     a containerd that restarted opens its FIFOs anew). A keeper with
//     neither has nobody left to hold them for, and they close as it exits.
//
// Why five minutes. The bound must comfortably exceed the longest time a
// daemon is legitimately away, or a keeper would leave just as its daemon
// comes back. Under the shipped systemd unit (deploy/templates/
// sandboxer.service) a crashed daemon is back after RestartSec=2s plus its
// start-up (recovery of every sandbox and task, bounded by
// TimeoutStartSec=60s); a hung one is aborted by the watchdog after
// WatchdogSec=30s, given TimeoutStopSec=30s, then restarted: about two
// minutes at worst, well below five. It is also the same figure as MaxWait:
// the package has one notion of how long a daemon may be away, whether the
// keeper holds containerd's requests for it or not. And the bound can never
// cut a containerd task connection whose requests wait for the daemon: a
// keeper that holds any connection is not idle, whatever its age. Such
// connections end by MaxWait when the daemon stays away, and only then does
// the idle clock start, so a keeper whose daemon is gone for good exits
// MaxWait + IdleTimeout after the daemon left, having closed containerd's
// connections as before. A daemon that reuses a keeper first opens a
// connection to its API socket, which restarts the idle clock; should it
// still find the keeper leaving (a race of under a second), its supervisor
// starts a new one within two seconds, before containerd can hold any
// connection to the leaving one.
//
// A keeper with an older command line, without the fd store's socket
// argument or also without the pid file's, is still recognised and reused
// by a newer daemon: replacing it would cut containerd's task connections.
// It holds no descriptors: until it is replaced, a daemon restart still
// ends containerd's copies of the VM containers' output (the daemon logs
// it). If it runs an older binary, none of the rules above apply to it
// until it is replaced for another reason (it dies, its sockets go). If it
// runs this one (an older daemon started it after the binary was
// upgraded), Run has no FDSocket, and without PidFile applies the socket
// and idle rules only.
//
// # Panics
//
// One bad connection must not end the keeper, and with it every containerd
// task connection of the node: every goroutine that serves a connection
// (the per-connection bridge or relay, the bridge's backend reader and
// reconnector, the relay's two copies) recovers a panic, logs it with its
// stack through log.G(ctx), and closes that connection only.
package keeper
