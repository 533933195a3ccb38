// Package stdio connects a process to the stdio containerd gives a task:
// FIFO paths (or file:// URIs) for stdin, stdout and stderr, a binary://
// logger for stdout and stderr, or a terminal.
//
// Without a terminal, stdout and stderr are handed to the process directly:
// the FIFO is opened read-write (so the open never blocks or fails for want
// of a reader, and the container never gets SIGPIPE while containerd
// restarts) and the process inherits the descriptor, so no copy goroutine
// sits between a container and its log, and output keeps flowing when the
// daemon restarts. A file:// target is created (with its parents) if
// missing and appended to. A binary:// logger is started by Open, gets the
// read ends of a stdout and a stderr pipe, and exits by itself once the
// process has exited and the pipes are closed (see startLogger). Stdin goes
// through a pipe fed by a copy from the FIFO, opened without blocking, so
// that CloseIO can end it: once the copy has moved what containerd wrote
// before it closed its end (stdinDrain at most), as CRI closes its end and
// sends CloseIO at once. The copy is not waited for by Wait: containerd may
// hold its end of stdin open after the process has exited. With a terminal, the console master received
// over a console socket is copied both ways.
//
// A stream the config names nothing for is /dev/null in the child, as
// containerd's shim gives it (go-runc's Set sees one for every stream).
//
// Every descriptor opened here is closed by Close; the process's own copies
// close when it exits, which is what gives containerd EOF.
package stdio
