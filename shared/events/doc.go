// Package events publishes task events to containerd's ttrpc events service
// (containerd.services.events.ttrpc.v1.Events/Forward).
//
// Publish never blocks the caller: events go into one ordered queue, and a
// single sender forwards them in order, retrying with backoff while
// containerd is away (restarting, or not up yet). The queue is bounded; when
// it overflows the oldest events are dropped with a log line, so a long
// containerd outage cannot grow the daemon without bound.
package events
