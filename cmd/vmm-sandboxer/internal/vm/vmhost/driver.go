package vmhost

import (
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// Binary is the VMM binary of cfg for driver name: cfg.Binary, or def when
// that is empty, looked up in PATH before anything starts (a missing one
// is errdefs.ErrNotFound, see hostproc.LookPath).
func Binary(name string, cfg *vm.Config, def string) (string, error) {
	bin := cfg.Binary
	if bin == "" {
		bin = def
	}
	return hostproc.LookPath(name, bin)
}

// Encode is a driver's State st of sandbox id as its VM persists it
// (vm.VM.State).
func Encode(id string, st any) (json.RawMessage, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("vm %s state: %w", id, err)
	}
	return b, nil
}

// Decode decodes a State of driver name that Encode made into st (a
// pointer to the driver's State); an error wraps
// errdefs.ErrInvalidArgument. The driver validates st then (State.Validate
// and its own fields).
func Decode(name string, state json.RawMessage, st any) error {
	if err := json.Unmarshal(state, st); err != nil {
		return fmt.Errorf("%s vm state: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
