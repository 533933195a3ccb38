package guidebook

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

// The documents, unchanged (see the package doc).
var (
	//go:embed config_guidebook.md
	ConfigGuidebook string
	//go:embed qmp.md
	QMPDoc string
)

// Commit is the StratoVirt commit the documents come from.
const Commit = "d5b320371f25a7198c7b09cf26b27b7c2cfa4e5c"

// Grammar is the command line the documents define.
type Grammar struct {
	// Options by name ("-machine").
	Options map[string]*Option
}

// Option is one command line option.
type Option struct {
	Name string
	// Bare says it appears without a value (-daemonize, -D); Valued with one.
	Bare, Valued bool
	// List says its value is a property list (see the package doc); the
	// value of an option that is not a list is free (a path, the kernel
	// command line).
	List bool
	// Positional is the key of a leading "[key=]value" ("type" of
	// -machine), PositionalValues its documented values (quoted words of
	// its bullet: "microvm", ...; empty: any).
	Positional       string
	PositionalValues []string
	// Kinds maps a kind ("" for a list without one) to its properties.
	Kinds map[string]map[string]bool
	// Section is where the option is first defined ("1.1 Machine Config").
	Section string
}

// Has reports whether kind is a documented kind of o.
func (o *Option) Has(kind string) bool {
	_, ok := o.Kinds[kind]
	return ok
}

// Property reports whether prop is documented for kind of o.
func (o *Option) Property(kind, prop string) bool { return o.Kinds[kind][prop] }

// KindNames are o's kinds, sorted.
func (o *Option) KindNames() []string {
	var k []string
	for n := range o.Kinds {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

var (
	parseOnce sync.Once
	parsed    *Grammar
)

// Parse is the grammar of the embedded documents (read once).
func Parse() *Grammar {
	parseOnce.Do(func() {
		g := &Grammar{Options: map[string]*Option{}}
		g.read(ConfigGuidebook)
		g.read(QMPDoc)
		parsed = g
	})
	return parsed
}

var (
	bulletRe     = regexp.MustCompile(`^\* ([A-Za-z][\w.-]*(?:/[A-Za-z][\w.-]*)*):`)
	positionalRe = regexp.MustCompile(`^\[([A-Za-z][\w-]*)=\]`)
	placeholder  = regexp.MustCompile(`<[^>]*>`)
	quotedRe     = regexp.MustCompile(`"([^"\s]+)"`)
)

// section is one "###" section's grammar lines and bullets.
type section struct {
	title   string
	lines   []string
	bullets []string
	text    []string
}

// read adds the options of one document.
func (g *Grammar) read(doc string) {
	var (
		secs    []*section
		cur     = &section{title: "preamble"}
		inBlock bool
		shell   bool // the block is a shell block (not json)
		block   []string
		skip    bool
	)
	secs = append(secs, cur)
	flush := func() {
		example := !shell
		for _, l := range block {
			t := strings.TrimSpace(l)
			if strings.Contains(t, "stratovirt") || strings.Contains(t, "ozone") || strings.HasPrefix(t, "$") {
				example = true
			}
		}
		if !example && !skip {
			for _, l := range block {
				if t := strings.TrimSpace(l); strings.HasPrefix(t, "-") {
					cur.lines = append(cur.lines, strings.TrimSpace(strings.TrimSuffix(t, `\`)))
				}
			}
		}
		block = nil
	}
	for _, l := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "```") {
			if inBlock {
				flush()
			} else {
				lang := strings.TrimSpace(strings.TrimPrefix(t, "```"))
				shell = lang == "" || lang == "shell"
			}
			inBlock = !inBlock
			continue
		}
		if inBlock {
			block = append(block, l)
			continue
		}
		switch {
		case strings.HasPrefix(l, "## "):
			skip = strings.Contains(l, "Ozone") || strings.Contains(l, "Libvirt")
			cur = &section{title: strings.TrimPrefix(l, "## ")}
			secs = append(secs, cur)
		case strings.HasPrefix(l, "### "):
			cur = &section{title: strings.TrimPrefix(l, "### ")}
			secs = append(secs, cur)
		}
		if m := bulletRe.FindStringSubmatch(l); m != nil && !skip {
			cur.bullets = append(cur.bullets, strings.Split(m[1], "/")...)
		}
		cur.text = append(cur.text, l)
	}
	for _, s := range secs {
		g.addSection(s)
	}
	// the examples' values of a positional option ("-m 256m") are
	// positional values, not kinds
	for _, o := range g.Options {
		if o.Positional != "" {
			for k := range o.Kinds {
				if k != "" {
					delete(o.Kinds, k)
				}
			}
		}
	}
}

// paragraph is the bullet of s starting with prefix, with its
// continuation lines.
func (s *section) paragraph(prefix string) string {
	var out []string
	for _, l := range s.text {
		switch {
		case strings.HasPrefix(l, prefix):
			out = append(out, l)
		case len(out) > 0 && (strings.TrimSpace(l) == "" || strings.HasPrefix(l, "*") || strings.HasPrefix(l, "#")):
			return strings.Join(out, " ")
		case len(out) > 0:
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
}

// addSection adds a section's grammar lines, then its bullets.
func (g *Grammar) addSection(s *section) {
	type ref struct {
		o    *Option
		kind string
	}
	var refs []ref
	for _, l := range s.lines {
		name, value, _ := strings.Cut(l, " ")
		value = strings.TrimSpace(value)
		o := g.Options[name]
		if o == nil {
			o = &Option{Name: name, Kinds: map[string]map[string]bool{}, Section: s.title}
			g.Options[name] = o
		}
		if value == "" {
			o.Bare = true
			continue
		}
		o.Valued = true
		kind, props, positional, list := parseValue(value)
		if !list {
			continue
		}
		o.List = true
		if positional != "" {
			o.Positional = positional
			for _, q := range quotedRe.FindAllStringSubmatch(s.paragraph("* "+positional+":"), -1) {
				if !slices.Contains(o.PositionalValues, q[1]) {
					o.PositionalValues = append(o.PositionalValues, q[1])
				}
			}
		}
		if o.Kinds[kind] == nil {
			o.Kinds[kind] = map[string]bool{}
		}
		for _, p := range props {
			o.Kinds[kind][p] = true
		}
		refs = append(refs, ref{o, kind})
	}
	for _, r := range refs {
		if r.o.Name == "-chardev" && !strings.Contains(s.title, "Chardev") {
			continue
		}
		for _, b := range s.bullets {
			r.o.Kinds[r.kind][b] = true
		}
	}
}

// parseValue reads one grammar value (see the package doc).
func parseValue(v string) (kind string, props []string, positional string, list bool) {
	v = placeholder.ReplaceAllString(v, "X")
	if m := positionalRe.FindStringSubmatch(v); m != nil {
		positional = m[1]
		props = append(props, positional)
		v = v[len(m[0]):]
		// the positional value itself (with its optional suffixes), up to
		// the next property
		if i := strings.Index(v, ","); i >= 0 {
			v = v[i:]
		} else {
			v = ""
		}
		list = true
	}
	if strings.HasPrefix(v, "\"") || strings.ContainsAny(v, " \t") && !strings.ContainsAny(v, ",=") {
		// a quoted or spaced text: free (the kernel command line)
		return "", nil, "", list
	}
	v = strings.NewReplacer("[", "", "]", "").Replace(v)
	if !list && !strings.ContainsAny(v, ",=") {
		// a single word: a kind without properties (-serial stdio), or
		// a free value (a path)
		if v == "X" || strings.HasPrefix(v, "/") || strings.HasPrefix(v, "\"") || strings.Trim(v, "0123456789") == "" ||
			strings.ContainsAny(v, " .") && !strings.Contains(v, ":") {
			return "", nil, "", false
		}
	}
	for i, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, _, hasEq := strings.Cut(item, "=")
		if i == 0 && positional == "" && !hasEq {
			if p, _, ok := strings.Cut(item, ":"); ok {
				kind = p + ":"
			} else {
				kind = item
			}
			continue
		}
		props = append(props, k)
	}
	return kind, props, positional, true
}

// Split is how StratoVirt splits a property list: at every comma (there is
// no escape), each item at its first "=". The first item is the kind when
// the option has kinds and the item has no "=" ("tap", "unix:<path>" gives
// kind "unix:" and its path as the value of the key "").
type Item struct {
	Key, Value string
	HasValue   bool
}

// SplitList splits a property list value.
func SplitList(v string) []Item {
	var items []Item
	for _, s := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(s, "=")
		items = append(items, Item{Key: k, Value: val, HasValue: ok})
	}
	return items
}

// KindOf is the kind an option's value names ("" if it names none): its
// first item when that is a bare word; "x:" for "x:rest".
func (o *Option) KindOf(v string) string {
	first, _, _ := strings.Cut(v, ",")
	if strings.Contains(first, "=") {
		return ""
	}
	if p, _, ok := strings.Cut(first, ":"); ok && o.Has(p+":") {
		return p + ":"
	}
	return first
}

// Check reports the first item of args (an argv without the binary) that
// the documents do not define: an option, a kind or a property. It checks
// documented-ness only, not values.
func (g *Grammar) Check(args []string) error {
	for i := 0; i < len(args); i++ {
		o := g.Options[args[i]]
		if o == nil {
			return fmt.Errorf("option %s is not in the guidebook", args[i])
		}
		if !o.Valued || (o.Bare && (i+1 >= len(args) || strings.HasPrefix(args[i+1], "-"))) {
			continue
		}
		if i+1 >= len(args) {
			return fmt.Errorf("option %s without its value", o.Name)
		}
		i++
		if !o.List {
			continue
		}
		if err := o.CheckValue(args[i]); err != nil {
			return err
		}
	}
	return nil
}

// CheckValue checks a property list value of o: its kind and property
// names must be documented, and a positional value among the documented
// ones.
func (o *Option) CheckValue(v string) error {
	items := SplitList(v)
	kind := ""
	start := 0
	switch {
	case o.Positional != "":
		if !items[0].HasValue {
			if len(o.PositionalValues) > 0 && !slices.Contains(o.PositionalValues, items[0].Key) {
				return fmt.Errorf("%s %s: %q is not a documented %s (%s)", o.Name, v, items[0].Key, o.Positional, strings.Join(o.PositionalValues, ", "))
			}
			start = 1
		}
	default:
		kind = o.KindOf(v)
		if !o.Has(kind) {
			return fmt.Errorf("%s %s: kind %q is not in the guidebook (it has %q)", o.Name, v, kind, o.KindNames())
		}
		if kind != "" {
			start = 1
		}
	}
	for _, it := range items[start:] {
		if !o.Property(kind, it.Key) {
			return fmt.Errorf("%s %s: property %q of %q is not in the guidebook", o.Name, v, it.Key, kind)
		}
	}
	return nil
}

// QMP is what qmp.md documents.
type QMP struct {
	// Commands are its commands, in order.
	Commands []string
	// Examples are each command's example exchange, "->" and "<-" lines
	// in order, as JSON texts.
	Examples map[string][]Line
	// Greeting is the greeting's JSON text.
	Greeting string
}

// Line is one line of an example exchange.
type Line struct {
	// Sent is true for "->" (to the VMM), false for "<-".
	Sent bool
	JSON string
}

// ParseQMP reads qmp.md.
func ParseQMP() *QMP {
	q := &QMP{Examples: map[string][]Line{}}
	inCommands, inBlock, afterGreeting := false, false, false
	cmd := ""
	for _, l := range strings.Split(QMPDoc, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			switch {
			case afterGreeting && strings.HasPrefix(t, "{"):
				q.Greeting, afterGreeting = t, false
			case strings.HasPrefix(t, "-> ") && cmd != "":
				q.Examples[cmd] = append(q.Examples[cmd], Line{Sent: true, JSON: strings.TrimPrefix(t, "-> ")})
			case strings.HasPrefix(t, "<- ") && cmd != "":
				q.Examples[cmd] = append(q.Examples[cmd], Line{JSON: strings.TrimPrefix(t, "<- ")})
			}
			continue
		}
		switch {
		case strings.HasPrefix(l, "## "):
			title := strings.TrimPrefix(l, "## ")
			inCommands = !slices.Contains([]string{"Introduction", "QMP Creation", "QMP Connection", "Event Notification", "Flow control"}, title)
			cmd = ""
		case strings.HasPrefix(l, "### ") && inCommands:
			cmd = strings.TrimSpace(strings.TrimPrefix(l, "### "))
			q.Commands = append(q.Commands, cmd)
		case strings.Contains(l, "`greeting`"):
			afterGreeting = true
		}
	}
	return q
}

// Valid reports whether the example line is JSON (qmp.md has a typo or
// two).
func (l Line) Valid() bool { return json.Valid([]byte(l.JSON)) }
