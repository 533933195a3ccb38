package wasmsb

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// RunModuleArg is the first argument of the one-shot mode.
const RunModuleArg = "run-module"

// RunModule is `wasm-sandboxer run-module [-engine E] [-cache DIR]
// [-root DIR] [-memory BYTES] MODULE.wasm [ARGS...]`: one module run in this
// process on its stdio, with DIR (default the module's directory) preopened
// at "/"; it returns the module's exit code. It is the "process per container"
// (shim) model the benchmark compares the daemon with, and a debugging aid.
func RunModule(factories map[string]wasi.New, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(RunModuleArg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	engine := fs.String("engine", "wasmtime", "engine")
	cache := fs.String("cache", "", "compiled-module cache directory of the engine (\"\" none)")
	root := fs.String("root", "", "directory preopened at / (default: the module's directory)")
	mem := fs.Int64("memory", 0, "memory limit in bytes (0 none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 {
		fmt.Fprintln(stderr, "usage: wasm-sandboxer run-module [-engine E] [-cache DIR] [-root DIR] [-memory BYTES] MODULE.wasm [ARGS...]")
		return 2
	}
	f, ok := factories[*engine]
	if !ok {
		var ks []string
		for k := range factories {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		fmt.Fprintf(stderr, "run-module: unknown engine %q (have: %s)\n", *engine, strings.Join(ks, ", "))
		return 2
	}
	path := fs.Arg(0)
	if *root == "" {
		*root = filepath.Dir(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, "run-module:", err)
		return 1
	}
	eng, err := f(wasi.EngineConfig{CacheDir: *cache})
	if err != nil {
		fmt.Fprintln(stderr, "run-module:", err)
		return 1
	}
	ctx := context.Background()
	mod, err := eng.Load(ctx, data)
	if err != nil {
		fmt.Fprintln(stderr, "run-module:", err)
		return 1
	}
	guestArgs := append([]string{"/" + filepath.Base(path)}, fs.Args()[1:]...)
	inst, err := mod.Start(ctx, &wasi.RunConfig{Args: guestArgs, Env: os.Environ(), Cwd: "/",
		Preopens: []wasi.Preopen{{Host: *root, Guest: "/"}}, Stdin: stdin, Stdout: stdout, Stderr: stderr, MemoryLimit: *mem})
	if err != nil {
		fmt.Fprintln(stderr, "run-module:", err)
		return 1
	}
	<-inst.Done()
	return int(inst.Result().ExitCode)
}
