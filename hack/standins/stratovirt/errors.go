package main

import (
	"fmt"
	"strings"
)

// chainError is an error as StratoVirt reports it: a message with the
// chain of causes under it (Rust's anyhow, printed with {:?}).
type chainError struct {
	msg    string
	causes []string
}

func (e *chainError) Error() string { return e.debug() }

// debug is anyhow's {:?} layout:
//
//	msg
//
//	Caused by:
//	    cause                  (one cause)
//	    0: cause 1             (several)
//	    1: cause 2
func (e *chainError) debug() string {
	if len(e.causes) == 0 {
		return e.msg
	}
	var b strings.Builder
	b.WriteString(e.msg)
	b.WriteString("\n\nCaused by:")
	for i, c := range e.causes {
		if len(e.causes) == 1 {
			fmt.Fprintf(&b, "\n    %s", c)
		} else {
			fmt.Fprintf(&b, "\n    %d: %s", i, c)
		}
	}
	return b.String()
}

// errorf is a StratoVirt error without causes.
func errorf(format string, a ...any) *chainError {
	return &chainError{msg: fmt.Sprintf(format, a...)}
}

// withContext wraps err under msg (anyhow's with_context).
func withContext(msg string, err error) *chainError {
	c := &chainError{msg: msg}
	if ce, ok := err.(*chainError); ok {
		c.causes = append([]string{ce.msg}, ce.causes...)
	} else {
		c.causes = []string{err.Error()}
	}
	return c
}

// StratoVirt's messages (util/src/error.rs, machine_manager/src/config,
// machine/src, boot_loader/src/error.rs at the guidebook's commit).
func errUnexpected(arg string) *chainError {
	return errorf("Found argument '%s' which wasn't expected, or isn't valid in the context. Use '-h' or '-help' to get usage.", arg)
}

func errMissingValue(name string) *chainError {
	return errorf("The argument '%s' requires a value, but none was supplied. Use '-h' or '-help' to get usage.", name)
}

func errDuplicate(name string) *chainError {
	return errorf("The argument '%s' was provided more than once. Use '-h' or '-help' to get usage.", name)
}

// errClap is what StratoVirt's property parser (clap) says of a property
// it does not know; clap also prints a usage, left out here.
func errClap(prop string) *chainError {
	return errorf("error: unexpected argument '--%s' found", prop)
}

// errNotEmulated is the stand-in's own refusal of what the guidebook
// defines but the stand-in cannot run; it says so, never posing as
// StratoVirt.
func errNotEmulated(what string) *chainError {
	return errorf("stratovirt stand-in: %s is in the guidebook but not emulated by the stand-in", what)
}
