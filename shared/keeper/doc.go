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
// come back within a bound, the keeper closes the connections and containerd
// cleans up as it would for a dead shim.
package keeper
