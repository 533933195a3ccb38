// Package store persists records as JSON files, one per id, written
// atomically: a temporary file in the same directory is written, fsynced,
// renamed over the target and the directory fsynced. A daemon killed at any
// moment leaves either the old or the new record, never half of one; stray
// temporary files are removed on Open. The store is the truth for recovery.
package store
