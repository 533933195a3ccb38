package sandbox

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// MaxIDLength bounds sandbox, container and exec ids. containerd's own ids are
// 64 hex characters; 76 leaves room for prefixes and keeps socket paths short.
const MaxIDLength = 76

// ValidateID checks an id taken from a request before it is used in a path.
// field names the request field for the error message.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s: must not be empty: %w", field, errdefs.ErrInvalidArgument)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%s: %d characters is longer than %d: %w", field, len(id), MaxIDLength, errdefs.ErrInvalidArgument)
	case id == "." || id == ".." || strings.Contains(id, ".."):
		return fmt.Errorf("%s %q: must not contain \"..\": %w", field, id, errdefs.ErrInvalidArgument)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok || (i == 0 && (r == '-' || r == '.')) {
			return fmt.Errorf("%s %q: character %q at %d is not allowed (letters, digits, '-', '_', '.'): %w", field, id, r, i, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// PodAnnotation is where containerd's CRI names a container's pod sandbox in
// the container's runtime spec.
const PodAnnotation = "io.kubernetes.cri.sandbox-id"

// PodOf returns the validated pod sandbox id a container's spec names.
// handler is the runtime handler, for the message.
func PodOf(spec *specs.Spec, handler string) (string, error) {
	var id string
	if spec != nil {
		id = spec.Annotations[PodAnnotation]
	}
	if id == "" {
		return "", fmt.Errorf("bundle config.json: annotation %s missing: a %s container must belong to a pod: %w", PodAnnotation, handler, errdefs.ErrInvalidArgument)
	}
	if err := ValidateID(PodAnnotation, id); err != nil {
		return "", err
	}
	return id, nil
}
