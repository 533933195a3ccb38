package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ttrpc framing (github.com/containerd/ttrpc channel.go): a 10-byte header,
// length (big endian), stream id, type, flags; then the message.
const (
	ttrpcRequest  = 1
	ttrpcResponse = 2
	ttrpcData     = 3
)

func frame(length, stream uint32, typ, flags byte, body []byte) []byte {
	b := make([]byte, 10, 10+len(body))
	binary.BigEndian.PutUint32(b[0:4], length)
	binary.BigEndian.PutUint32(b[4:8], stream)
	b[8], b[9] = typ, flags
	return append(b, body...)
}

func request(service, method string, payload []byte) []byte {
	b, _ := proto.Marshal(&ttrpc.Request{Service: service, Method: method, Payload: payload})
	return frame(uint32(len(b)), 1, ttrpcRequest, 0, b)
}

// rawFrames: bytes on both sockets that no client library would send.
// The keeper reads the Task API's frames before the daemon does: neither
// may die or stop answering other connections. A request the server can
// read gets a clear code (Unimplemented for what it does not serve,
// InvalidArgument for a payload that is no message).
func (r *runner) rawFrames() {
	d := r.d
	rng := rand.New(rand.NewPCG(7, 8))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	const task = "containerd.task.v3.Task"
	type rawCase struct {
		name string
		data []byte
		// want: the code of the answer to read (OK: read none)
		want []codes.Code
	}
	cases := []rawCase{
		{"random bytes", garbage(4096), nil},
		{"a header claiming 4 GiB", frame(0xffffffff, 1, ttrpcRequest, 0, nil), nil},
		{"a header claiming 5 MiB, then nothing", frame(5<<20, 1, ttrpcRequest, 0, garbage(100)), nil},
		{"a request that is no Request", frame(64, 1, ttrpcRequest, 0, garbage(64)), nil},
		{"an even stream id", frame(0, 2, ttrpcRequest, 0, nil), nil},
		{"a data frame for no stream", frame(4, 5, ttrpcData, 0, garbage(4)), nil},
		{"a response frame from the client", frame(4, 1, ttrpcResponse, 0, garbage(4)), nil},
		{"an unknown service", request("x.y.Z", "Create", nil), []codes.Code{codes.Unimplemented}},
		{"an unknown method", request(task, "Format", nil), []codes.Code{codes.Unimplemented}},
		{"Task.Create with a garbage payload", request(task, "Create", []byte{0xff, 0xff, 0xff, 0x0f}), invalid},
		{"Task.State with a garbage payload", request(task, "State", garbage(32)), invalid},
		{"Task.Kill with a truncated payload", request(task, "Kill", []byte{0x0a, 0x40, 'a'}), invalid},
	}
	for i := range 8 {
		cases = append(cases, rawCase{fmt.Sprintf("random frame %d", i), frame(uint32(rng.IntN(300)), rng.Uint32(), byte(rng.IntN(5)), byte(rng.IntN(4)), garbage(rng.IntN(300))), nil})
	}
	for _, c := range cases {
		r.rawCase("ttrpc: "+c.name, d.taskSock, c.data, c.want)
		r.try(kase{name: "Task.State after ttrpc: " + c.name, want: notFound, run: func(ctx context.Context, _ *daemon) error {
			return taskCalls(d)["State"](ctx, "fuzz-raw")
		}})
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"random bytes", garbage(4096)},
		{"the HTTP/2 preface, then garbage", append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), garbage(512)...)},
		{"a frame claiming 16 MiB", append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 1)},
	} {
		r.rawCase("grpc: "+c.name, d.listen, c.data, nil)
		r.try(kase{name: "Controller.Status after grpc: " + c.name, want: notFound, run: func(ctx context.Context, _ *daemon) error {
			return ctrlCalls(d)["Status"](ctx, "fuzz-raw")
		}})
	}
}

// rawCase writes data on a new connection to sock, reads the answer when
// want names its code, and checks that the daemon and its keeper live.
func (r *runner) rawCase(name, sock string, data []byte, want []codes.Code) {
	r.mu.Lock()
	r.cases++
	r.mu.Unlock()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		r.fail(name, "dial: "+err.Error())
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(callTimeout))
	_, _ = c.Write(data)
	if want != nil {
		code, err := readStatus(c)
		switch {
		case err != nil:
			r.fail(name, fmt.Sprintf("no answer: %v", err))
		case !slices.Contains(want, code):
			r.fail(name, fmt.Sprintf("got %s, want %v", code, want))
		}
	} else {
		// the server may wait for the rest or close: either is fine; give
		// it a moment to choke on what it got
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = io.Copy(io.Discard, c)
	}
	if !r.d.alive() {
		r.fail(name, fmt.Sprintf("the daemon died (%v)", r.d.exitErr))
	}
	if r.d.keeperPid > 0 && syscall.Kill(r.d.keeperPid, 0) != nil {
		r.fail(name, fmt.Sprintf("the keeper (pid %d) died", r.d.keeperPid))
	}
}

// readStatus reads one ttrpc response frame and returns its status code.
func readStatus(c net.Conn) (codes.Code, error) {
	var h [10]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	if h[8] != ttrpcResponse || n > 4<<20 {
		return 0, fmt.Errorf("not a response frame: type %d, length %d", h[8], n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, err
	}
	var resp ttrpc.Response
	if err := proto.Unmarshal(body, &resp); err != nil {
		return 0, err
	}
	return status.FromProto(resp.Status).Code(), nil
}
