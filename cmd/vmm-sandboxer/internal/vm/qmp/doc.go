// Package qmp is the client side of the QEMU Machine Protocol's wire
// format, for every VMM that speaks it: QEMU and StratoVirt. Each has its
// own command set and its own variant of the protocol, chosen with
// Options:
//
//   - QEMU greets with {"QMP": {"version": {"qemu": {...}, "package": ...},
//     "capabilities": [...]}}, stays in capabilities negotiation mode until
//     qmp_capabilities (Options.Capabilities), and echoes any JSON "id" of
//     a command in its answer, which the client matches (Options.IDs).
//   - StratoVirt's qmp.md documents a greeting whose version is keyed
//     "StratoVirt", no negotiation (commands are taken right after the
//     greeting) and commands without ids (its parser takes a string id
//     only, a number fails the whole command): both options off, and an
//     answer is the first non-event message after the command.
//
// A Client is one connection. Commands are serialized; each is bounded by
// its context (deadline and cancellation both end a blocked read or
// write). After an I/O error or an interrupted command the connection is
// closed and every later call fails. Asynchronous events that arrive
// meanwhile are collected (Events). Error answers are *Error values that
// unwrap to an errdefs class.
//
// It is a small client of our own rather than
// github.com/digitalocean/go-qemu: the drivers need a handful of commands,
// every exchange must be bounded by a context (go-qemu's socket monitor
// takes none and blocks on a VMM that does not answer), and go-qemu brings
// generated bindings for QEMU's whole QAPI schema, which StratoVirt does
// not share.
package qmp
