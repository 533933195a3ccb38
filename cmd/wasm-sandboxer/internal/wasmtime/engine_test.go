package wasmtime

import (
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/wasitest"
)

var newEngine = wasitest.Engine(New)

func TestConformance(t *testing.T) { wasitest.Run(t, newEngine) }

// TestFigures measures load, start and idle-instance figures; it runs with
// MAGNETAR_WASM_FIGURES=1.
func TestFigures(t *testing.T) { wasitest.Figures(t, newEngine) }

// TestCacheAcrossProcesses: a second process on the same cache dir
// compiles nothing.
func TestCacheAcrossProcesses(t *testing.T) { wasitest.CacheAcrossProcesses(t, newEngine) }
