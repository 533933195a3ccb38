package wazero

import (
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/wasitest"
)

func TestConformance(t *testing.T) {
	wasitest.Run(t, func(t *testing.T, cfg wasi.EngineConfig) wasi.Engine {
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}
