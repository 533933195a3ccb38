// Package stdio connects a process to the stdio containerd gives a task:
// FIFO paths (or file:// URIs) for stdin, stdout and stderr, or a terminal.
//
// Without a terminal, stdout and stderr are handed to the process directly:
// the FIFO is opened read-write (so the open never blocks or fails for want
// of a reader, and the container never gets SIGPIPE while containerd
// restarts) and the process inherits the descriptor, so no copy goroutine
// sits between a container and its log, and output keeps flowing when the
// daemon restarts. Stdin goes through a pipe fed by a copy from the FIFO,
// opened without blocking, so that CloseIO can end it. With a terminal, the
// console master received over a console socket is copied both ways.
//
// Every descriptor opened here is closed by Close; the process's own copies
// close when it exits, which is what gives containerd EOF.
package stdio
