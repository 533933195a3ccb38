package clhvalidate

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func newV(t *testing.T) *Validator {
	t.Helper()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRequestBodies(t *testing.T) {
	v := newV(t)
	ctx := context.Background()
	for _, c := range []struct {
		name, method, path, body string
		want                     string // "" = valid; else a substring of the error
	}{
		{"create minimal", "PUT", "/vm.create", `{"payload":{"kernel":"/k"}}`, ""},
		{"create full", "PUT", "/vm.create", `{"payload":{"kernel":"/k","initramfs":"/i","cmdline":"c"},"cpus":{"boot_vcpus":2,"max_vcpus":2},` +
			`"memory":{"size":268435456,"shared":true},"fs":[{"tag":"t","socket":"/s","num_queues":1,"queue_size":1024}],` +
			`"vsock":{"cid":3,"socket":"/v"},"serial":{"mode":"File","file":"/c"},"console":{"mode":"Off"}}`, ""},
		{"create without payload", "PUT", "/vm.create", `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`, "payload"},
		{"create unknown key", "PUT", "/vm.create", `{"payload":{"kernel":"/k"},"cpu":{"boot_vcpus":1}}`, "cpu"},
		{"create unknown nested key", "PUT", "/vm.create", `{"payload":{"kernel":"/k","kernal":"/x"}}`, "payload.kernal"},
		{"create unknown key in array", "PUT", "/vm.create", `{"payload":{},"fs":[{"tag":"t","socket":"/s","num_queues":1,"queue_size":8,"tags":"x"}]}`, "fs[0].tags"},
		{"vsock cid below 3", "PUT", "/vm.create", `{"payload":{},"vsock":{"cid":2,"socket":"/v"}}`, "cid"},
		{"console mode not in enum", "PUT", "/vm.create", `{"payload":{},"serial":{"mode":"file"}}`, "mode"},
		{"fs without queues", "PUT", "/vm.create", `{"payload":{},"fs":[{"tag":"t","socket":"/s"}]}`, "num_queues"},
		{"boot", "PUT", "/vm.boot", ``, ""},
		{"boot with a body", "PUT", "/vm.boot", `{}`, "body"},
		{"add-net", "PUT", "/vm.add-net", `{"id":"net0","mac":"02:00:00:00:00:01","num_queues":2}`, ""},
		{"add-net wrong type", "PUT", "/vm.add-net", `{"mtu":"1500"}`, "mtu"},
		{"ping", "GET", "/vmm.ping", ``, ""},
		{"ping with PUT", "PUT", "/vmm.ping", ``, "no such operation"},
		{"unknown endpoint", "PUT", "/vm.explode", ``, "no such operation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b []byte
			if c.body != "" {
				b = []byte(c.body)
			}
			err := v.Body(ctx, c.method, c.path, b)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("valid request refused: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("invalid request accepted")
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
	if err := v.Body(ctx, "PUT", "/vm.explode", nil); !errors.Is(err, ErrUnknownOperation) || errors.Is(err, ErrMethodNotAllowed) {
		t.Errorf("unknown operation: %v, want ErrUnknownOperation", err)
	}
	if err := v.Body(ctx, "GET", "/vm.boot", nil); !errors.Is(err, ErrUnknownOperation) || !errors.Is(err, ErrMethodNotAllowed) {
		t.Errorf("wrong method: %v, want ErrMethodNotAllowed", err)
	}
}

func TestRequestNeedsJSONContentType(t *testing.T) {
	v := newV(t)
	r, _ := http.NewRequest("PUT", "http://localhost/api/v1/vm.create", strings.NewReader(`{"payload":{}}`))
	r.Header.Set("Content-Type", "text/plain")
	if _, err := v.Request(context.Background(), r); err == nil {
		t.Error("a text/plain body accepted")
	}
}

func TestResponses(t *testing.T) {
	v := newV(t)
	ctx := context.Background()
	ex := func(method, path string) *Exchange {
		r, _ := http.NewRequest(method, "http://localhost/api/v1"+path, nil)
		if path == "/vm.add-net" {
			r, _ = http.NewRequest(method, "http://localhost/api/v1"+path, strings.NewReader(`{"mac":"02:00:00:00:00:01"}`))
			r.Header.Set("Content-Type", "application/json")
		}
		e, err := v.Request(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	js := http.Header{"Content-Type": []string{"application/json"}}
	for _, c := range []struct {
		name         string
		e            *Exchange
		status       int
		body         string
		undocumented []int
		ok           bool
	}{
		{"ping", ex("GET", "/vmm.ping"), 200, `{"version":"v53.0","pid":7}`, nil, true},
		{"ping without version", ex("GET", "/vmm.ping"), 200, `{"pid":7}`, nil, false},
		{"ping unknown key", ex("GET", "/vmm.ping"), 200, `{"version":"x","uptime":1}`, nil, false},
		{"info", ex("GET", "/vm.info"), 200, `{"config":{"payload":{"kernel":"/k"}},"state":"Running"}`, nil, true},
		{"info with a device tree", ex("GET", "/vm.info"), 200, `{"config":{"payload":{}},"state":"Running","device_tree":{"_net0":{"id":"_net0","resources":[{"PciBar":[0,1]}],"children":[],"pci_bdf":"0000:00:05.0"}}}`, nil, true},
		{"info device tree unknown key", ex("GET", "/vm.info"), 200, `{"config":{"payload":{}},"state":"Running","device_tree":{"x":{"name":"x"}}}`, nil, false},
		{"info bad state", ex("GET", "/vm.info"), 200, `{"config":{"payload":{}},"state":"Booting"}`, nil, false},
		{"info 404", ex("GET", "/vm.info"), 404, ``, nil, true},
		{"boot 204", ex("PUT", "/vm.boot"), 204, ``, nil, true},
		{"boot 204 with a body", ex("PUT", "/vm.boot"), 204, `{}`, nil, false},
		{"boot 500 undocumented", ex("PUT", "/vm.boot"), 500, `failed`, nil, false},
		{"boot 500 admitted", ex("PUT", "/vm.boot"), 500, `failed`, []int{500}, true},
		{"shutdown 405", ex("PUT", "/vm.shutdown"), 405, ``, nil, true},
		{"add-net 200", ex("PUT", "/vm.add-net"), 200, `{"id":"net0","bdf":"0000:00:05.0"}`, nil, true},
		{"add-net 200 without bdf", ex("PUT", "/vm.add-net"), 200, `{"id":"net0"}`, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b []byte
			if c.body != "" {
				b = []byte(c.body)
			}
			err := c.e.Response(ctx, c.status, js, b, c.undocumented...)
			if (err == nil) != c.ok {
				t.Errorf("response %d %s: err %v, want ok=%v", c.status, c.body, err, c.ok)
			}
		})
	}
}

func TestSet(t *testing.T) {
	v := newV(t)
	got, err := v.Set("PUT", "/vm.create", []byte(`{"payload":{"kernel":"/k","cmdline":""},"memory":{"size":1048576,"shared":false,"thp":true,"hugepages":true},`+
		`"iommu":false,"fs":[{"tag":"t","socket":"/s","num_queues":1,"queue_size":1024}],"vsock":{"cid":3,"socket":"/v"},"cpus":{"boot_vcpus":1,"max_vcpus":1,"nested":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "cpus.boot_vcpus cpus.max_vcpus fs[].socket fs[].tag memory.hugepages memory.size payload.kernel vsock.cid vsock.socket"
	if strings.Join(got, " ") != want {
		t.Errorf("set properties\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if got, err := v.Set("PUT", "/vm.boot", nil); err != nil || got != nil {
		t.Errorf("vm.boot: %v %v", got, err)
	}
	if _, err := v.Set("PUT", "/vm.nothing", nil); !errors.Is(err, ErrUnknownOperation) {
		t.Errorf("unknown: %v", err)
	}
}
