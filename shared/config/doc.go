// Package config loads a sandboxer's TOML configuration: the file is decoded
// over the documented defaults (so every key is optional), unknown keys and
// wrong types are errors that name the key, and Validate runs on the result.
// Command-line flags override the file after loading.
package config
