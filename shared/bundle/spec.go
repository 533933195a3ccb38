package bundle

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/store"
)

// WriteSpec writes sp as the config.json of the OCI bundle dir (mode
// 0600), synced and renamed into place (store.WriteFileAtomic): the
// runtime reads it complete or not at all, also after a power loss when
// dir is on disk.
func WriteSpec(dir string, sp *specs.Spec) error {
	data, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	return store.WriteFileAtomic(filepath.Join(dir, "config.json"), data, 0o600)
}
