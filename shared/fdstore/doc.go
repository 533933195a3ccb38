// Package fdstore keeps file descriptors open in a process that outlives
// the daemon, as systemd's FDSTORE does for a service: the keeper (see
// shared/keeper) serves a Store on a unix socket, and the daemon's Client
// hands it descriptors to hold under names.
//
// Why. A VM's containers write their output into the guest; the daemon
// relays it into containerd's stdout and stderr FIFOs, whose only writer it
// is, and reads containerd's stdin FIFO. When the daemon dies (kill -9, a
// crash, an upgrade) containerd's reader of an output FIFO sees EOF, and
// CRI's copy into the container log ends for good; containerd's writer of
// stdin gets EPIPE. With a write end of each output FIFO and a read end of
// each stdin FIFO held by the keeper, neither happens: the restarted daemon
// reopens the FIFOs by path and the bytes flow again. The store never reads
// or writes what it holds; it only keeps it open.
//
// # Operations
//
//   - Hold(key, f): keep a duplicate of f under key, closing the one it
//     replaces (the new one is stored first, so the FIFO never lacks a
//     holder in between).
//   - Release(keys...): close what is held under keys; unknown keys are
//     fine (idempotent).
//   - Retain(keys): close everything whose key is not listed. A daemon
//     calls it once its recovery is done, with what it holds again
//     (Client.RetainHeld), so that the descriptors of processes that went
//     away while no daemon ran do not stay open for good.
//   - List: the keys held.
//
// What is held does not depend on the connection that sent it: a daemon
// that dies leaves its descriptors held, which is the point.
//
// A key is 1 to MaxKeyLen bytes of printable ASCII without space (0x21 to
// 0x7e), e.g. "<container id>/<exec id or ->/stdout". A store holds at
// most MaxFDs descriptors (see there); a Hold of a new key beyond that
// fails with errdefs.ErrResourceExhausted and the descriptor is closed.
//
// # Wire
//
// A stream unix socket (the keeper's, 0600: shared/transport.Listen). Each
// request and reply is a frame: a 4-byte big-endian length, then that many
// bytes of text, lines separated by '\n'. A request's first line is its
// operation (HOLD, RELEASE, RETAIN, LIST), the other lines are keys; a HOLD
// names one key and carries exactly one descriptor (SCM_RIGHTS, sent with
// the frame's first bytes), no other request carries any. A reply is "OK"
// (for LIST followed by the keys, one a line) or "ERR <code>" and a line of
// message, code being one of invalid-argument, resource-exhausted,
// not-implemented, unavailable or internal, which the client turns back
// into the errdefs category. A frame is at most 8 MiB, which a RETAIN of
// MaxFDs keys of MaxKeyLen bytes fits in. A connection may carry any
// number of requests, one at a time; the Client dials one per call, so
// that it always reaches the keeper that owns the socket path now.
package fdstore
