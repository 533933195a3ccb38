// Package clhapi is Cloud Hypervisor's REST API as published: its OpenAPI
// document (Document, embedded from cloud-hypervisor.yaml) and the model
// types generated from it (clhapi.gen.go: VmConfig, NetConfig, VmInfo,
// VmmPingResponse, ...). The vmm sandboxer's Cloud Hypervisor driver
// (cmd/vmm-sandboxer/internal/clh) sends and reads these types; the test
// stand-in (hack/standins/cloud-hypervisor) decodes them and checks every
// request and response against Document (package clhapi/clhvalidate).
//
// # The document
//
// cloud-hypervisor.yaml is a byte-for-byte copy of
// vmm/src/api/openapi/cloud-hypervisor.yaml of
// https://github.com/cloud-hypervisor/cloud-hypervisor at commit
// ae44c2971c83 (v53.0-246, 2026-08-22): OpenAPI 3.0.1, info.version 0.3.0,
// served at http://localhost/api/v1 on the unix socket given with
// --api-socket. Cloud Hypervisor's code is licensed Apache-2.0 OR
// BSD-3-Clause; the copy is used under Apache-2.0 (LICENSE-Apache-2.0.txt).
// TestDocumentIsThePublishedOne pins its SHA-256: updating it to a newer
// commit is a deliberate change of DocumentCommit, the hash and the
// generated code together.
//
// # Generated code
//
// Only the model types are generated, by oapi-codegen v2.8.2 (built from
// the Go module proxy at that exact version) with oapi-codegen.yaml, whose
// header template names the document's origin, commit and licence:
//
//	go generate ./shared/clhapi
//
// TestGeneratedCodeIsCurrent builds the same oapi-codegen and fails when the
// committed clhapi.gen.go differs from what it generates. The operations
// (paths, methods, status codes) are not generated: the driver carries them
// on go-openapi/runtime, which cannot generate from an OpenAPI 3 document
// (go-swagger reads Swagger 2.0 only).
package clhapi

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml cloud-hypervisor.yaml
