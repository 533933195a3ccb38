// Package config loads a sandboxer's TOML configuration: the file is decoded
// over the documented defaults (so every key is optional), unknown keys and
// wrong types are errors that name the key, deprecated keys are migrated
// (Migrator) and Validate runs on the result. Command-line flags override
// the file after loading.
//
// A length of time is a Duration ("10s", "5m"); the bare integers of
// seconds that such keys took before are still read, for one release, and
// Load returns a Warning for each, for the daemon to log.
//
// Validate checks values only. What a configuration names on the host (a
// binary to run, a file to read) is checked at start-up by CheckHost
// (HostChecker), with Executable and ExistingFile, so that a daemon that
// cannot work does not start, and says why.
package config
