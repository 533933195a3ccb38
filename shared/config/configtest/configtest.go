// Package configtest holds the checks every sandboxer's configuration
// tests make on top of shared/config.
package configtest

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/config"
)

// ShippedIsDefault checks that the configuration file a package ships
// (deploy/etc/magnetar/NAME.toml) decodes without warnings to exactly the
// daemon's defaults: the file shows every default, so that a user reading
// it sees what the daemon does without it.
func ShippedIsDefault[C config.Validator](t *testing.T, path string, defaults func() C) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := defaults()
	warns, err := config.Decode(string(data), c)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%s: %v %v", path, warns, err)
	}
	if want := defaults(); !reflect.DeepEqual(c, want) {
		t.Errorf("%s is\n%#v\nthe defaults are\n%#v", path, c, want)
	}
}

// Fuzz is the body of a sandboxer's configuration fuzz target: the TOML
// text is decoded over defaults() (seeded with the shipped file at path and
// seeds). A text Decode accepts validates, and encodes back to TOML that
// decodes to the same configuration; a text it refuses gets an
// invalid-argument error that says where: the line of a syntax error, or a
// key the text sets (the defaults are valid, so what fails is the text's).
func Fuzz[C config.Validator](f *testing.F, path string, defaults func() C, seeds ...string) {
	f.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c := defaults()
		_, err := config.Decode(text, c)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Decode(%q) = %v: not invalid-argument", text, err)
			}
			var m map[string]any
			md, perr := toml.Decode(text, &m)
			if perr != nil {
				return // a syntax error: the decoder's message says where
			}
			for _, k := range md.Keys() {
				if strings.Contains(err.Error(), k[len(k)-1]) {
					return
				}
			}
			t.Fatalf("Decode(%q) = %v: names none of the keys %v", text, err, md.Keys())
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Decode(%q) accepted a configuration that does not validate: %v", text, err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(c); err != nil {
			t.Fatalf("Decode(%q) accepted %#v, which does not encode: %v", text, c, err)
		}
		again := defaults()
		if _, err := config.Decode(buf.String(), again); err != nil {
			t.Fatalf("Decode(%q) accepted a configuration whose encoding\n%s\nis refused: %v", text, buf.String(), err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("Decode(%q) = %#v\nencodes as\n%s\nwhich decodes to %#v", text, c, buf.String(), again)
		}
	})
}
