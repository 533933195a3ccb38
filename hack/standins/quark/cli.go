package main

import (
	"fmt"
	"strings"
)

// The command line of Quark's qvisor (qvisor/src/runc/cmd/command.rs and
// sandbox.rs at QuarkContainer/Quark afe1a23), parsed as its clap 2 parser
// parses it, for the two subcommands the stand-in implements: sandbox, and
// boot (Quark's internal re-execution of itself; here the daemonized
// child). Everything else is refused with clap's messages and exit code 1.

// globalArgs are qvisor's options before the subcommand.
type globalArgs struct {
	root      string // -r/--root, default /run/qvisor
	daemonize bool   // -d/--daemonize (the sandbox subcommand daemonizes anyway)
	log       string // --log (ignored by Quark too)
	logFormat string // --log-format (ignored)
	systemd   bool   // --systemd-cgroup
	verbose   int    // -v, repeatable
}

// sandboxArgs are the sandbox subcommand's options, all required.
type sandboxArgs struct {
	id, taskSocket, pidFile string
}

// bootArgs are the boot subcommand's (internal).
type bootArgs struct {
	pipefd string
}

// cmdline is a parsed command line: sub is "sandbox", "boot", "help" or
// "version".
type cmdline struct {
	global  globalArgs
	sub     string
	sandbox sandboxArgs
	boot    bootArgs
}

// usageError is clap's error: printed to stderr, exit code 1.
type usageError struct{ msg, usage string }

func (e *usageError) Error() string {
	return fmt.Sprintf("error: %s\n\nUSAGE:\n    %s\n\nFor more information try --help", e.msg, e.usage)
}

const (
	appUsage     = "quark [FLAGS] [OPTIONS] <SUBCOMMAND>"
	sandboxUsage = "quark sandbox --id <id> --pid-file <pid-file> --task-socket <task-socket>"
	bootUsage    = "quark boot --pipefd <pipefd>"
)

// quarkSubcommands are qvisor's subcommands; the stand-in implements
// sandbox and boot.
var quarkSubcommands = []string{"run", "create", "start", "wait", "list", "cmd", "boot", "exec", "pause", "resume", "ps", "kill", "delete", "state", "sandbox"}

func unexpected(arg, usage string) error {
	return &usageError{fmt.Sprintf("Found argument '%s' which wasn't expected, or isn't valid in this context", arg), usage}
}

// option is one option that takes a value: its long name, short letter (0
// for none) and where the value goes.
type option struct {
	long  string
	short byte
	dst   *string
	seen  bool
}

// value takes the value of o from "--long=v" / "-sv" / "-s=v" (inline) or
// the next argument.
func (o *option) value(inline string, hasInline bool, args []string, i *int, usage string) error {
	name := "--" + o.long + " <" + o.long + ">"
	if o.short != 0 {
		name = "-" + string(o.short) + ", " + name
	}
	if o.seen {
		return &usageError{fmt.Sprintf("The argument '%s' was provided more than once, but cannot be used multiple times", name), usage}
	}
	o.seen = true
	if hasInline {
		if inline == "" {
			return &usageError{fmt.Sprintf("The argument '%s' requires a value but none was supplied", name), usage}
		}
		*o.dst = inline
		return nil
	}
	if *i+1 >= len(args) || (strings.HasPrefix(args[*i+1], "-") && args[*i+1] != "-") {
		return &usageError{fmt.Sprintf("The argument '%s' requires a value but none was supplied", name), usage}
	}
	*i++
	*o.dst = args[*i]
	return nil
}

// parse parses args (without the program name).
func parse(args []string) (*cmdline, error) {
	c := &cmdline{global: globalArgs{root: "/run/qvisor", log: "/home/brad/rust/quark/qvisor.log"}}
	g := &c.global
	opts := []*option{{long: "root", short: 'r', dst: &g.root}, {long: "log", dst: &g.log}, {long: "log-format", dst: &g.logFormat}}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			c.sub = "help"
			return c, nil
		case a == "-V" || a == "--version":
			c.sub = "version"
			return c, nil
		case a == "-d" || a == "--daemonize":
			g.daemonize = true
		case a == "--systemd-cgroup":
			g.systemd = true
		case strings.HasPrefix(a, "--"):
			name, inline, has := strings.Cut(a[2:], "=")
			var o *option
			for _, x := range opts {
				if x.long == name {
					o = x
				}
			}
			if o == nil {
				return nil, unexpected(a, appUsage)
			}
			if err := o.value(inline, has, args, &i, appUsage); err != nil {
				return nil, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// short flags, combined (-vvd), -r with its value attached
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'v':
					g.verbose++
					continue
				case 'd':
					g.daemonize = true
					continue
				case 'r':
					rest := a[j+1:]
					inline, has := strings.TrimPrefix(rest, "="), rest != ""
					if err := opts[0].value(inline, has, args, &i, appUsage); err != nil {
						return nil, err
					}
				default:
					return nil, unexpected("-"+string(a[j]), appUsage)
				}
				break
			}
		default:
			c.sub = a
			goto sub
		}
	}
	return nil, &usageError{"'qvisor' requires a subcommand, but one was not provided", appUsage}
sub:
	rest := args[i+1:]
	switch c.sub {
	case "sandbox":
		return c, parseSub(rest, sandboxUsage, []*option{
			{long: "id", dst: &c.sandbox.id}, {long: "task-socket", dst: &c.sandbox.taskSocket}, {long: "pid-file", dst: &c.sandbox.pidFile}}, &c.sub)
	case "boot":
		return c, parseSub(rest, bootUsage, []*option{{long: "pipefd", dst: &c.boot.pipefd}}, &c.sub)
	}
	for _, s := range quarkSubcommands {
		if s == c.sub {
			return nil, fmt.Errorf("error: the subcommand '%s' is Quark's, but this stand-in implements only 'sandbox' (the contract Kuasar's quark-sandboxer and magnetar-quark use)", s)
		}
	}
	return nil, unexpected(c.sub, appUsage)
}

// parseSub parses a subcommand's options, all of them required; -h/--help
// sets sub to "help".
func parseSub(args []string, usage string, opts []*option, sub *string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" {
			*sub = "help"
			return nil
		}
		name, inline, has := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		var o *option
		if strings.HasPrefix(a, "--") {
			for _, x := range opts {
				if x.long == name {
					o = x
				}
			}
		}
		if o == nil {
			return unexpected(a, usage)
		}
		if err := o.value(inline, has, args, &i, usage); err != nil {
			return err
		}
	}
	var missing []string
	for _, o := range opts {
		if !o.seen {
			missing = append(missing, "    --"+o.long+" <"+o.long+">")
		}
	}
	if len(missing) > 0 {
		return &usageError{"The following required arguments were not provided:\n" + strings.Join(missing, "\n"), usage}
	}
	return nil
}

const helpText = `quark (Magnetar's STAND-IN for Quark Containers' qvisor: tests only)
qvisor - run a secure container from an oci-runtime spec file

USAGE:
    quark [FLAGS] [OPTIONS] <SUBCOMMAND>

FLAGS:
    -d, --daemonize         Daemonize the process
        --systemd-cgroup    systemd cgroup driver
    -v                      Sets the level of verbosity

OPTIONS:
        --log <log>                  Compatibility (ignored)
        --log-format <log-format>    Compatibility (ignored)
    -r, --root <r>                   Dir for state

SUBCOMMANDS:
    sandbox    Create a sandbox (the only one this stand-in implements)
`
