package clh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// Operations of the REST API the driver uses: method, path (below
// clhapi.BasePath) and the statuses that mean success, as the document
// defines them (TestOperationsAreTheDocuments checks this table against
// it).
var (
	opPing        = operation{"GET", "/vmm.ping", []int{200}}
	opShutdownVMM = operation{"PUT", "/vmm.shutdown", []int{204}}
	opCreate      = operation{"PUT", "/vm.create", []int{204}}
	opBoot        = operation{"PUT", "/vm.boot", []int{204}}
	opInfo        = operation{"GET", "/vm.info", []int{200}}
	opShutdownVM  = operation{"PUT", "/vm.shutdown", []int{204}}
	// 204: added to a VM not booted yet (cold); 200 with PciDeviceInfo:
	// hot-plugged
	opAddNet = operation{"PUT", "/vm.add-net", []int{200, 204}}
)

// operations lists them all (tests).
var operations = []operation{opPing, opShutdownVMM, opCreate, opBoot, opInfo, opShutdownVM, opAddNet}

type operation struct {
	method, path string
	ok           []int
}

func (o operation) String() string { return o.method + " " + o.path }

// APIError is an answer the operation does not define as success: the
// status and Cloud Hypervisor's message (the body, as text). It unwraps to
// an errdefs class by status, as the document describes them: 400 (bad
// configuration) ErrInvalidArgument, 404 (VM not created)
// ErrNotFound, 405 (VM not in the state the action needs)
// ErrFailedPrecondition, 409 (a device with that id exists)
// ErrAlreadyExists, anything else (500: the action failed) ErrUnknown.
type APIError struct {
	Operation string
	Status    int
	Message   string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("cloud-hypervisor %s: %d %s", e.Operation, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Unwrap is the errdefs class of the status.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return errdefs.ErrInvalidArgument
	case http.StatusNotFound:
		return errdefs.ErrNotFound
	case http.StatusMethodNotAllowed:
		return errdefs.ErrFailedPrecondition
	case http.StatusConflict:
		return errdefs.ErrAlreadyExists
	}
	return errdefs.ErrUnknown
}

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 4 << 10

// Client speaks Cloud Hypervisor's REST API on its --api-socket unix
// socket, with go-openapi/runtime carrying the requests (the bodies are
// clhapi's generated types). Each request uses a connection of its own,
// closed afterwards: nothing ties the VMM to the daemon's lifetime. A
// request that passes file descriptors (AddNet's taps) is written by the
// client itself with SCM_RIGHTS, which net/http cannot send (see
// fdTransport). Every call is bounded by its context.
type Client struct {
	socket string
	rt     *httptransport.Runtime
}

// NewClient is a client of the API on socket.
func NewClient(socket string) *Client {
	tr := &fdTransport{socket: socket}
	tr.plain = &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return tr.dial(ctx) },
		DisableKeepAlives: true,
	}
	rt := httptransport.NewWithClient("localhost", clhapi.BasePath, []string{"http"}, &http.Client{Transport: tr})
	// Cloud Hypervisor answers errors as text: any type reaches the reader
	rt.Consumers["*/*"] = runtime.ByteStreamConsumer()
	return &Client{socket: socket, rt: rt}
}

// Socket is the API socket.
func (c *Client) Socket() string { return c.socket }

// call runs op with body (nil: none) and decodes a 200 answer's JSON into
// out (nil: ignored). fds are sent with the request (SCM_RIGHTS). It
// returns the status.
func (c *Client) call(ctx context.Context, op operation, body, out any, fds ...*os.File) (int, error) {
	if len(fds) > 0 {
		ctx = context.WithValue(ctx, fdsKey{}, fds)
	}
	status := 0
	_, err := c.rt.SubmitContext(ctx, &runtime.ClientOperation{
		ID: op.String(), Method: op.method, PathPattern: op.path,
		ProducesMediaTypes: []string{runtime.JSONMime}, ConsumesMediaTypes: []string{runtime.JSONMime},
		Schemes: []string{"http"},
		Params: runtime.ClientRequestWriterFunc(func(r runtime.ClientRequest, _ strfmt.Registry) error {
			if dl, ok := ctx.Deadline(); ok {
				if err := r.SetTimeout(time.Until(dl)); err != nil {
					return err
				}
			}
			if body != nil {
				return r.SetBodyParam(body)
			}
			return nil
		}),
		Reader: runtime.ClientResponseReaderFunc(func(r runtime.ClientResponse, _ runtime.Consumer) (any, error) {
			status = r.Code()
			for _, ok := range op.ok {
				if status != ok {
					continue
				}
				if status == http.StatusOK && out != nil {
					if err := runtime.JSONConsumer().Consume(r.Body(), out); err != nil {
						return nil, fmt.Errorf("cloud-hypervisor %s: answer: %w: %w", op, err, errdefs.ErrUnknown)
					}
				}
				return nil, nil
			}
			b, _ := io.ReadAll(io.LimitReader(r.Body(), maxErrorBody))
			return nil, &APIError{Operation: op.String(), Status: status, Message: strings.TrimSpace(string(b))}
		}),
		Context: ctx,
	})
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) || errdefs.IsUnknown(err) {
			return status, err
		}
		if ctx.Err() != nil {
			return status, fmt.Errorf("cloud-hypervisor %s: %w", op, ctx.Err())
		}
		return status, fmt.Errorf("cloud-hypervisor %s on %s: %w: %w", op, c.socket, err, errdefs.ErrUnavailable)
	}
	return status, nil
}

// Ping is GET /vmm.ping: the VMM's version (and pid, build version,
// features when it says).
func (c *Client) Ping(ctx context.Context) (*clhapi.VmmPingResponse, error) {
	var r clhapi.VmmPingResponse
	if _, err := c.call(ctx, opPing, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateVM is PUT /vm.create: the VM is defined, not booted.
func (c *Client) CreateVM(ctx context.Context, cfg *clhapi.VmConfig) error {
	_, err := c.call(ctx, opCreate, cfg, nil)
	return err
}

// BootVM is PUT /vm.boot.
func (c *Client) BootVM(ctx context.Context) error {
	_, err := c.call(ctx, opBoot, nil, nil)
	return err
}

// Info is GET /vm.info.
func (c *Client) Info(ctx context.Context) (*clhapi.VmInfo, error) {
	var r clhapi.VmInfo
	if _, err := c.call(ctx, opInfo, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ShutdownVM is PUT /vm.shutdown: the guest is stopped at once (it is not
// asked to power off).
func (c *Client) ShutdownVM(ctx context.Context) error {
	_, err := c.call(ctx, opShutdownVM, nil, nil)
	return err
}

// ShutdownVMM is PUT /vmm.shutdown: the VMM exits. A connection the VMM
// closes before it answers is success: it is exiting.
func (c *Client) ShutdownVMM(ctx context.Context) error {
	_, err := c.call(ctx, opShutdownVMM, nil, nil)
	if err != nil && ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		return nil
	}
	return err
}

// AddNet is PUT /vm.add-net with the taps' descriptors passed out of band
// (SCM_RIGHTS on the request's connection; the body carries none). Before
// vm.boot the device is added to the configuration (204, nil info); after,
// it is hot-plugged (200 with its PCI address).
func (c *Client) AddNet(ctx context.Context, n *clhapi.NetConfig, taps ...*os.File) (*clhapi.PciDeviceInfo, error) {
	var info clhapi.PciDeviceInfo
	status, err := c.call(ctx, opAddNet, n, &info, taps...)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	return &info, nil
}

// fdsKey carries the descriptors of a request in its context.
type fdsKey struct{}

// aLongTimeAgo is a deadline in the past: it unblocks I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// fdTransport is the client's http.RoundTripper: requests without
// descriptors go through net/http on a fresh unix connection; a request
// whose context carries descriptors is written here, in one sendmsg(2)
// with the descriptors as SCM_RIGHTS ancillary data, and its response read
// back with net/http's parser. Cloud Hypervisor takes the descriptors
// received with a request's bytes as that request's (its micro_http server
// reads with recvmsg).
type fdTransport struct {
	socket string
	plain  *http.Transport
}

func (t *fdTransport) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", t.socket)
}

func (t *fdTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	fds, _ := req.Context().Value(fdsKey{}).([]*os.File)
	if len(fds) == 0 {
		return t.plain.RoundTrip(req)
	}
	ctx := req.Context()
	raw, err := wireRequest(req)
	if err != nil {
		return nil, err
	}
	rights, err := unixRights(fds)
	if err != nil {
		return nil, err
	}
	c, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		uc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	n, _, err := uc.WriteMsgUnix(raw, rights, nil)
	if err != nil {
		return fail(fmt.Errorf("send request with %d descriptors: %w", len(fds), err))
	}
	// the descriptors went with the first byte; the rest, if the kernel
	// took only part, follows plainly
	if n < len(raw) {
		if _, err := uc.Write(raw[n:]); err != nil {
			return fail(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(uc), req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, conn: uc, stop: stop}
	return resp, nil
}

// wireRequest is req as HTTP/1.1 bytes, with a Content-Length (never
// chunked) and Connection: close.
func wireRequest(req *http.Request) ([]byte, error) {
	r := req.Clone(req.Context())
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	}
	r.Close = true
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// unixRights is the SCM_RIGHTS message for files (read without switching
// them to blocking mode, as File.Fd would).
func unixRights(files []*os.File) ([]byte, error) {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		sc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("descriptor of %s: %w", f.Name(), err)
		}
		if err := sc.Control(func(fd uintptr) { fds = append(fds, int(fd)) }); err != nil {
			return nil, fmt.Errorf("descriptor of %s: %w", f.Name(), err)
		}
	}
	return unix.UnixRights(fds...), nil
}

// connBody closes the connection with the response body.
type connBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

func (b *connBody) Close() error {
	err := b.ReadCloser.Close()
	b.stop()
	b.conn.Close()
	return err
}
