package stratovirt

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp"
	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

// docServer plays qmp.md: its greeting, then for each request the example
// exchange of that command, checking that the request is the example's
// "->" line (as JSON) and sending its "<-" lines as they are written.
func docServer(t *testing.T, c net.Conn, doc *guidebook.QMP, errs chan<- error) {
	defer c.Close()
	if _, err := c.Write([]byte(doc.Greeting + "\n")); err != nil {
		errs <- err
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			errs <- nil
			return
		}
		var req map[string]any
		if err := json.Unmarshal(line, &req); err != nil {
			errs <- err
			return
		}
		cmd, _ := req["execute"].(string)
		ex := doc.Examples[cmd]
		if len(ex) == 0 || !ex[0].Sent {
			t.Errorf("the client sent %s, which qmp.md has no example of", line)
			errs <- nil
			return
		}
		var want map[string]any
		if err := json.Unmarshal([]byte(ex[0].JSON), &want); err != nil {
			errs <- err
			return
		}
		if !reflect.DeepEqual(req, want) {
			t.Errorf("the client sent %s; qmp.md's example is %s", line, ex[0].JSON)
		}
		for _, l := range ex[1:] {
			if _, err := c.Write([]byte(l.JSON + "\n")); err != nil {
				errs <- nil
				return
			}
		}
	}
}

// TestQMPAsDocumented: the driver's QMP (query-status, quit) is
// exchanged exactly as qmp.md's examples show: the greeting taken, no
// qmp_capabilities, no id, the answers and the SHUTDOWN event read.
func TestQMPAsDocumented(t *testing.T) {
	doc := guidebook.ParseQMP()
	cli, srv := net.Pipe()
	errs := make(chan error, 1)
	go docServer(t, srv, doc, errs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := qmp.New(ctx, cli, qmpOptions)
	if err != nil {
		t.Fatal(err)
	}
	if g := q.Greeting(); g.Version.Application != "StratoVirt" || g.Version.Micro != 1 || len(g.Capabilities) != 0 {
		t.Errorf("greeting %+v", g)
	}
	st, err := q.QueryStatus(ctx)
	if err != nil || st.Status != "running" || !st.Running {
		t.Errorf("query-status: %+v %v", st, err)
	}
	if err := q.Quit(ctx); err != nil {
		t.Errorf("quit: %v", err)
	}
	// quit's answer comes before its event (qmp.md): read on the next
	// command, which the document's server has no answer to: close
	q.Close()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestQMPEventsAsDocumented: the events qmp.md shows before an answer
// (stop's STOP) are kept.
func TestQMPEventsAsDocumented(t *testing.T) {
	doc := guidebook.ParseQMP()
	cli, srv := net.Pipe()
	errs := make(chan error, 1)
	go docServer(t, srv, doc, errs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := qmp.New(ctx, cli, qmpOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if ev := q.Events(); len(ev) != 1 || ev[0].Event != "STOP" || ev[0].Timestamp.Seconds != 1583908726 {
		t.Errorf("events %+v", ev)
	}
}
