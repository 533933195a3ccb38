package clhvalidate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// Validator checks exchanges against the document. It is safe for
// concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// New loads and validates clhapi.Document.
func New() (*Validator, error) {
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(clhapi.Document)
	if err != nil {
		return nil, fmt.Errorf("cloud hypervisor openapi document: %w", err)
	}
	if err := doc.Validate(l.Context); err != nil {
		return nil, fmt.Errorf("cloud hypervisor openapi document: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("cloud hypervisor openapi document: routes: %w", err)
	}
	return &Validator{doc: doc, router: r}, nil
}

// ErrUnknownOperation is returned by Request for a path or method the
// document does not define; for a path it defines with other methods the
// error is also ErrMethodNotAllowed.
var (
	ErrUnknownOperation = errors.New("no such operation in the document")
	ErrMethodNotAllowed = errors.New("method not allowed on this path")
)

// Exchange is one request found valid, whose response is still to check.
type Exchange struct {
	in *openapi3filter.RequestValidationInput
	// Operation is "PUT /vm.create" (the path without /api/v1).
	Operation string
	// OperationID is the document's operationId, when it has one.
	OperationID string
}

func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		SkipSettingDefaults:               true,
		RejectWhenRequestBodyNotSpecified: true,
		IncludeResponseStatus:             true,
		MultiError:                        true,
		AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
	}
}

// Request checks r: the operation exists (ErrUnknownOperation otherwise, for
// errors.Is), and its body (read and put back) matches the operation's
// request body, with no unknown property. r's URL must be absolute or its
// Host set, as a client on the API socket sends it (http://localhost/api/v1/...).
func (v *Validator) Request(ctx context.Context, r *http.Request) (*Exchange, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	// the router matches servers[0].url: scheme and host must be set
	rr := r.Clone(ctx)
	rr.Body = io.NopCloser(bytes.NewReader(body))
	if rr.URL.Host == "" {
		rr.URL.Host = r.Host
	}
	if rr.URL.Scheme == "" {
		rr.URL.Scheme = "http"
	}
	route, params, err := v.router.FindRoute(rr)
	if err != nil {
		var re *routers.RouteError
		if errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error() {
			return nil, fmt.Errorf("%s %s: %w: %w", r.Method, r.URL.Path, ErrUnknownOperation, ErrMethodNotAllowed)
		}
		return nil, fmt.Errorf("%s %s: %w: %w", r.Method, r.URL.Path, ErrUnknownOperation, err)
	}
	op := r.Method + " " + strings.TrimPrefix(route.Path, clhapi.BasePath)
	if len(body) == 0 {
		rr.Body = http.NoBody
	}
	in := &openapi3filter.RequestValidationInput{Request: rr, PathParams: params, Route: route, Options: options()}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return nil, fmt.Errorf("%s: request: %w", op, err)
	}
	if len(body) > 0 {
		if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil {
			if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
				if err := strictJSON(body, mt.Schema.Value); err != nil {
					return nil, fmt.Errorf("%s: request body: %w", op, err)
				}
			}
		}
	}
	return &Exchange{in: in, Operation: op, OperationID: route.Operation.OperationID}, nil
}

// Documented reports whether the operation documents status.
func (e *Exchange) Documented(status int) bool {
	return e.in.Route.Operation.Responses.Status(status) != nil
}

// Statuses lists the statuses the operation documents, sorted.
func (e *Exchange) Statuses() []int {
	var out []int
	for k := range e.in.Route.Operation.Responses.Map() {
		if n, err := strconv.Atoi(k); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// Response checks a response to the exchange's request: a documented status
// with a body matching its schema (none where it documents none), with no
// unknown property. A status in undocumentedErrors that the operation does
// not document is admitted without a body check (the document lists no
// error answer for several operations that fail in practice); any other
// undocumented status is an error.
func (e *Exchange) Response(ctx context.Context, status int, header http.Header, body []byte, undocumentedErrors ...int) error {
	if !e.Documented(status) {
		if slices.Contains(undocumentedErrors, status) {
			return nil
		}
		return fmt.Errorf("%s: response status %d: not in the document (it lists %v)", e.Operation, status, e.Statuses())
	}
	ref := e.in.Route.Operation.Responses.Status(status)
	if len(body) > 0 && (ref.Value == nil || len(ref.Value.Content) == 0) {
		return fmt.Errorf("%s: response %d: a body where the document defines none", e.Operation, status)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: e.in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: options()}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: response %d: %w", e.Operation, status, err)
	}
	if len(body) > 0 {
		if mt := ref.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
			if err := strictJSON(body, mt.Schema.Value); err != nil {
				return fmt.Errorf("%s: response %d body: %w", e.Operation, status, err)
			}
		}
	}
	return nil
}

// Body checks a request body for method and path (without /api/v1, e.g.
// "/vm.create") as a client would send it: for golden files.
func (v *Validator) Body(ctx context.Context, method, path string, body []byte) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://localhost"+clhapi.BasePath+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	_, err = v.Request(ctx, r)
	return err
}

// Set lists the properties of a request body for method and path (without
// /api/v1) whose values differ from the document's default (the zero value
// where it names none: false, 0, ""), as JSON paths with arrays written
// "[]" ("memory.shared", "fs[].socket"); objects and arrays are listed
// through their members. For a consumer that honours only some properties
// and must refuse the rest. The body must have passed Request.
func (v *Validator) Set(method, path string, body []byte) ([]string, error) {
	op := v.doc.Paths.Find(clhapi.BasePath + path)
	if op == nil {
		op = v.doc.Paths.Find(path)
	}
	if op == nil || op.GetOperation(method) == nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrUnknownOperation)
	}
	rb := op.GetOperation(method).RequestBody
	if rb == nil || rb.Value == nil || rb.Value.Content.Get("application/json") == nil {
		return nil, nil
	}
	var val any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&val); err != nil {
		return nil, err
	}
	var out []string
	nonDefault(rb.Value.Content.Get("application/json").Schema.Value, val, "", &out)
	sort.Strings(out)
	return out, nil
}

func nonDefault(s *openapi3.Schema, v any, at string, out *[]string) {
	if s == nil {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if at != "" {
				p = at + "." + k
			}
			var ps *openapi3.Schema
			if r, ok := s.Properties[k]; ok {
				ps = r.Value
			} else if ap := s.AdditionalProperties.Schema; ap != nil {
				ps = ap.Value
			}
			nonDefault(ps, e, p, out)
		}
		return
	case []any:
		if s.Items != nil {
			for _, e := range x {
				nonDefault(s.Items.Value, e, at+"[]", out)
			}
		}
		return
	}
	if !isDefault(s, v) {
		*out = append(*out, at)
	}
}

// isDefault reports whether a scalar equals the schema's default, or the
// zero value when it has none.
func isDefault(s *openapi3.Schema, v any) bool {
	if s.Default != nil {
		return fmt.Sprint(s.Default) == fmt.Sprint(v)
	}
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case json.Number:
		return x.String() == "0"
	}
	return false
}

// strictJSON fails on any object property the schema does not name.
func strictJSON(body []byte, s *openapi3.Schema) error {
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	var bad []string
	unknown(s, v, "", &bad)
	if len(bad) > 0 {
		return fmt.Errorf("properties the document does not define: %s", strings.Join(bad, ", "))
	}
	return nil
}

func unknown(s *openapi3.Schema, v any, at string, bad *[]string) {
	if s == nil {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if at != "" {
				p = at + "." + k
			}
			if ps, ok := s.Properties[k]; ok {
				unknown(ps.Value, x[k], p, bad)
			} else if ap := s.AdditionalProperties.Schema; ap != nil {
				unknown(ap.Value, x[k], p, bad)
			} else if len(s.Properties) > 0 && (s.AdditionalProperties.Has == nil || !*s.AdditionalProperties.Has) {
				// a schema that names its properties; one that names
				// none is a free-form object (DeviceNode.resources)
				*bad = append(*bad, p)
			}
		}
	case []any:
		if s.Items == nil {
			return
		}
		for i, e := range x {
			unknown(s.Items.Value, e, fmt.Sprintf("%s[%d]", at, i), bad)
		}
	}
}
