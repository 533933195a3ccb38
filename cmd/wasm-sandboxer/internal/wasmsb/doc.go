// Package wasmsb is the wasm sandboxer: Kubernetes pods whose containers
// are WASI preview1 modules run inside the daemon itself, one engine
// instance per container, no process per pod or container.
//
// A pod is a record (Create makes its state directory, Start returns the
// daemon's Task API address, Stop kills its containers). The pod's engine
// is chosen at Create from the sandboxer name containerd sends (the proxy
// plugin of the runtime handler) through the [engines] table of the
// configuration: magnetar-wasm runs on wasmtime, magnetar-wasm-wazero on
// wazero, both served by one daemon on one socket.
//
// A container's module is process.args[0] resolved inside the mounted
// rootfs (openat2 RESOLVE_IN_ROOT: no path or symlink leaves it), read and
// loaded at Task.Create so that a missing or invalid module fails the
// container there with a message naming the path. WASI args, env and cwd
// come from the OCI process; the rootfs is preopened at "/" and every
// bind-mounted directory at its destination (read-only where the mount
// is); stdin, stdout and stderr are containerd's FIFOs. Exit codes are the
// module's own; a trap ends it with 134 and the trap message on stderr; a
// kill (any terminating signal: WASI has no signal handlers) with 137.
//
// Loading: the engines cache compiled modules by content digest (in memory
// while a Load of it is open, on disk under <dir>/modcache/<engine>). On
// top of that the sandboxer shares one loaded module among the containers
// whose module file is the same file (inode, size, mtime, ctime: every
// container of an image on overlayfs), so they neither read nor hash it
// again, and keeps the module of an ended container for a while
// (cache.keep) for the next container of its image.
//
// Exec runs a module of the container's rootfs (args[0] of the exec) as a
// new instance with its own stdio and exit code, so crictl exec works.
//
// Resources: the OCI memory limit bounds the module's linear memory (a
// module growing past it fails on its own; it is then reported as the
// kernel's OOM killer would leave a Linux container: exit status 137 and
// TaskOOM, which containerd turns into the reason OOMKilled); Stats
// and pod Metrics report memory and CPU time as cgroup v1 metrics from
// the engine's counters; Update takes a new memory limit for later execs
// and names what it cannot apply (ErrNotImplemented).
//
// Restart: modules die with the daemon. Recover reports every container
// that was running as exited with ExitCodeLost (255) and logs why (the
// container's own output streams ended with the daemon, so containerd no
// longer reads them); Delete cleans it up.
// Pods hold nothing that dies, so they stay ready and run new containers.
package wasmsb
