// Package modcache is the on-disk compiled-module cache the wasm engines
// share: one entry per module, keyed by the content digest of its wasm bytes
// (sha256), in a directory the engine owns (<--dir>/modcache/<engine>).
//
// An entry is a directory <dir>/<hex digest>/ holding whatever the engine
// writes there (wasmtime: one serialized module, loaded by mmap; wazero: its
// own file cache) and a small "meta" file written last, atomically (temp +
// rename): it is the entry's commit record and its guard. It names the
// format, the engine tag (engine and version: an entry from another engine
// version is stale), the digest, and the size and CRC-32C of every file of
// the entry, and ends with the CRC-32C of the meta text itself. Lookup
// verifies all of it before the engine deserializes anything, because
// deserializing native code that is corrupt or truncated is unsafe in
// general; a bad entry is removed and reported, the engine recompiles.
// CRC-32C runs in hardware (SSE4.2) at several GB/s, so checking a 9 MB
// module costs about a millisecond, against the 1.1 s a compile would.
//
// The cache is bounded by a byte count: after each Commit the least recently
// used entries (the meta file's mtime, touched on every Lookup and by
// Touch when an engine serves a Load from memory) are removed
// until the total is under the bound. The entry just written is never
// evicted, so one entry larger than the bound stays alone. Removing an entry
// that an engine has mapped is harmless on Linux (the mapping keeps the
// inode). Leftover temp files and uncommitted entries (a crash mid-write)
// are removed on sight.
package modcache
