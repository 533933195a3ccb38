// Package configtest holds the checks every sandboxer's configuration
// tests make on top of shared/config.
package configtest

import (
	"os"
	"reflect"
	"testing"

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
