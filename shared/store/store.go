package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	ext    = ".json"
	tmpExt = ".tmp"
)

// Store is a directory of JSON records keyed by id. Ids must already be
// validated (sandbox.ValidateID): the store refuses anything path-like.
type Store struct {
	dir    string
	noSync bool
}

// OpenUnsynced is Open for records of things that cannot outlive the
// machine: processes. Writes stay atomic against a killed daemon (temporary
// file + rename) but are not fsynced: after a power loss or reboot the
// processes they describe are gone anyway, and an fsync costs milliseconds
// on every container start and exec.
func OpenUnsynced(dir string) (*Store, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	s.noSync = true
	return s, nil
}

// Open creates dir (0700) if needed and removes leftovers of interrupted writes.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpExt) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("store: bad id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.dir, id+ext), nil
}

// Put writes v as the record for id, atomically.
func (s *Store) Put(id string, v any) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", id, err)
	}
	return writeFile(p, data, 0o600, !s.noSync)
}

// Get reads the record for id into v; ErrNotFound when there is none.
func (s *Store) Get(id string, v any) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %s: %w", id, errdefs.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: decode %s: %v: %w", id, err, errdefs.ErrDataLoss)
	}
	return nil
}

// Delete removes the record for id; a missing record is not an error.
func (s *Store) Delete(id string) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	if s.noSync {
		return nil
	}
	return syncDir(s.dir)
}

// IDs lists the ids that have a record, sorted.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ext) {
			ids = append(ids, strings.TrimSuffix(n, ext))
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// WriteFileAtomic writes data to path through a synced temporary file and a
// rename, then syncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, true)
}

// writeFile writes data to path through a temporary file and a rename; with
// sync, the file and the directory are synced.
func writeFile(path string, data []byte, perm os.FileMode, sync bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*"+tmpExt)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !sync {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}
