// Package service assembles the guest agent's ttrpc server: containerd's
// Task API v3 (shared/task over the container backend, wrapped by
// WithStreams), the Sandbox service (Health, Setup, SyncClock, GetEvents,
// DebugExec, Shutdown) and the Streams service (stdio), all on one server
// so they share the host's single connection.
//
// Nothing here touches the guest directly: Setup, SyncClock and Shutdown go
// through a System (agent/internal/guest in the VM, a fake in tests), child
// processes through a runc.ProcessMonitor (the PID-1 reaper in the VM), and
// containers through a task.Backend (agent/internal/runcbe in the VM). So the
// whole protocol is tested in-process over a net.Pipe.
//
// Stdio: Hub implements agentapi's stdio contract. Before the backend
// creates a process, WithStreams has the hub create the FIFOs the request
// names (only agentapi.StdioPath paths are accepted), open the agent's end
// of each (read end of stdout/stderr, a read-write end of stdin) and hold a
// placeholder writer on the outputs until the process started, so a reader
// that attaches early never sees a premature EOF. Output copies a FIFO to a
// ttrpc server stream until EOF; a second reader preempts the first (the
// connection of the first may be dead), and a chunk that could not be sent
// is kept for the next reader. Input writes a client stream into stdin and
// closes it on the stream's clean end.
//
// Events: EventQueue is the task server's events.Publisher; GetEvents is a
// long poll acknowledging by sequence number.
package service
