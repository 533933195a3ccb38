// Command wasm-sandboxer runs Kubernetes pods whose containers are WASI
// preview1 modules, inside this one daemon, under containerd's Sandbox API:
// no shim and no process per pod or container.
//
// The engines compiled in are listed below; the configuration's [engines]
// table maps each runtime handler (proxy plugin name) to one of them.
// `wasm-sandboxer run-module ...` runs one module in a process of its own
// (the benchmark's process-per-container baseline, and a debugging aid).
package main

import (
	"os"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasmsb"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasmtime"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wazero"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// engines are the engines of this binary, by the name the configuration uses.
var engines = map[string]wasi.New{
	"wasmtime": wasmtime.New,
	"wazero":   wazero.New,
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == wasmsb.RunModuleArg {
		os.Exit(wasmsb.RunModule(engines, os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	daemon.Main(wasmsb.Sandboxer(engines))
}
