package main

import (
	"strings"
	"testing"
)

// TestParse: the command line Kuasar's quark-sandboxer runs, in clap's
// spellings, and what clap refuses, with its messages.
func TestParse(t *testing.T) {
	for _, args := range [][]string{
		{"-r", "/b", "sandbox", "--task-socket", "/s", "--id", "p1", "--pid-file", "/p"},
		{"--root=/b", "sandbox", "--id=p1", "--task-socket=/s", "--pid-file=/p"},
		{"-vv", "-d", "--log", "/l", "--log-format", "json", "--systemd-cgroup", "-r/b", "sandbox", "--id", "p1", "--task-socket", "/s", "--pid-file", "/p"},
		{"-r=/b", "sandbox", "--pid-file", "/p", "--id", "p1", "--task-socket", "/s"},
	} {
		c, err := parse(args)
		if err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		if c.sub != "sandbox" || c.global.root != "/b" || c.sandbox != (sandboxArgs{id: "p1", taskSocket: "/s", pidFile: "/p"}) {
			t.Errorf("%q: %+v", args, c)
		}
	}
	c, err := parse([]string{"-vv", "sandbox", "--id", "a", "--task-socket", "/s", "--pid-file", "/p"})
	if err != nil || c.global.verbose != 2 || c.global.root != "/run/qvisor" {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if c, err := parse([]string{"boot", "--pipefd", "3"}); err != nil || c.sub != "boot" || c.boot.pipefd != "3" {
		t.Errorf("boot: %+v, %v", c, err)
	}
	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{nil, "requires a subcommand"},
		{[]string{"-r", "/b"}, "requires a subcommand"},
		{[]string{"sandbox"}, "required arguments were not provided:\n    --id <id>\n    --task-socket <task-socket>\n    --pid-file <pid-file>"},
		{[]string{"sandbox", "--id", "a", "--task-socket", "/s"}, "not provided:\n    --pid-file <pid-file>"},
		{[]string{"sandbox", "--id", "a", "--task-socket", "/s", "--pid-file", "/p", "--bundle", "/b"}, "Found argument '--bundle' which wasn't expected"},
		{[]string{"sandbox", "--id", "a", "--id", "b", "--task-socket", "/s", "--pid-file", "/p"}, "'--id <id>' was provided more than once"},
		{[]string{"sandbox", "--id", "--task-socket", "/s", "--pid-file", "/p"}, "'--id <id>' requires a value"},
		{[]string{"sandbox", "--id=", "--task-socket", "/s", "--pid-file", "/p"}, "'--id <id>' requires a value"},
		{[]string{"sandbox", "p1"}, "Found argument 'p1'"},
		{[]string{"-r"}, "'-r, --root <root>' requires a value"},
		{[]string{"--bogus", "sandbox"}, "Found argument '--bogus'"},
		{[]string{"-x", "sandbox"}, "Found argument '-x'"},
		{[]string{"create", "c1"}, "implements only 'sandbox'"},
		{[]string{"frob"}, "Found argument 'frob'"},
		{[]string{"sandbox", "-i", "a"}, "Found argument '-i'"},
	} {
		_, err := parse(bad.args)
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: %v, want %q", bad.args, err, bad.msg)
		}
	}
}
