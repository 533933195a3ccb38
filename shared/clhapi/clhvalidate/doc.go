// Package clhvalidate checks HTTP exchanges with Cloud Hypervisor's REST API
// against its OpenAPI document (clhapi.Document) with kin-openapi: the
// operation (path under /api/v1 and method), the request body's schema, and
// the response's status and body schema. It is test tooling: the vmm
// sandboxer's Cloud Hypervisor driver checks its golden request bodies with
// it, and the stand-in (hack/standins/cloud-hypervisor) checks every request
// it receives and every response it sends. The daemon does not link it.
//
// What is checked, beyond kin-openapi's schema validation:
//
//   - unknown properties: an object may hold only the properties its schema
//     names (the document never sets additionalProperties: false, so a
//     misspelt key would otherwise pass); maps (additionalProperties with a
//     schema) are checked value by value;
//   - a body on an operation that documents none is refused, and so is a
//     request body without Content-Type application/json;
//   - defaults are not filled in (the body checked is the body sent);
//   - a response status the operation does not document is refused, except
//     where the document is silent on errors: Response takes a list of
//     statuses the caller admits as undocumented error answers (see
//     Exchange.Response).
package clhvalidate
