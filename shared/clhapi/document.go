package clhapi

import _ "embed"

// Document is Cloud Hypervisor's OpenAPI document (cloud-hypervisor.yaml).
//
//go:embed cloud-hypervisor.yaml
var Document []byte

// The document's origin.
const (
	// DocumentRepository is where cloud-hypervisor.yaml comes from.
	DocumentRepository = "https://github.com/cloud-hypervisor/cloud-hypervisor"
	// DocumentPath is its path in that repository.
	DocumentPath = "vmm/src/api/openapi/cloud-hypervisor.yaml"
	// DocumentCommit is the commit it was copied at (v53.0-246).
	DocumentCommit = "ae44c2971c83"
	// DocumentSHA256 is the copy's SHA-256.
	DocumentSHA256 = "a0772f45ccd007f18a431d303d19a1d31f515f254d55f500509d4d7c25515f10"
	// BasePath is the path prefix of every endpoint (servers[0].url).
	BasePath = "/api/v1"
)
