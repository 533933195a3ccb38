// Package taskv2 speaks containerd's Task API v2 (containerd.task.v2.Task)
// with the Go types of v3, for a peer that serves only v2: Quark Containers'
// sandbox task server (`quark sandbox --task-socket`), and the stand-in of
// it the tests run.
//
// # v2 and v3 on the wire
//
// The two versions of runtime/task/shim.proto in containerd's api module
// (v1.12.0) declare the same messages with the same fields and numbers and
// the same seventeen RPCs; they differ in their protobuf package only
// (containerd.task.v2 and containerd.task.v3). Protobuf's wire form carries
// field numbers, never message names, so a v3 message encodes to exactly
// the bytes of its v2 twin. What differs on a ttrpc connection is the
// service name each request names: "containerd.task.v2.Task" or
// "containerd.task.v3.Task". (containerd itself falls back from v3 to v2
// when Task.Create answers NotImplemented, i.e. ttrpc's "service not found".)
//
// So the edge needs no conversion of messages:
//
//   - a client: Client wraps a ttrpc client whose requests to the v3
//     service are renamed to v2 by an interceptor (ClientInterceptor), and
//     returns v3's TTRPCTaskService over it;
//   - a server: Register serves a v3 implementation under the v2 name,
//     each method decoding its request into the v3 type.
//
// Tests check both against each other and against the generated v2 code.
package taskv2
