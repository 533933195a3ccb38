package config

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is the value of a key that is a length of time. In TOML it is a
// Go duration string: "10s", "5m", "1h30m", "250ms". A bare integer is read
// as seconds, the form these keys had before they were durations: Decode
// warns about it, naming the key and what to write instead, and a later
// release will refuse it. A negative value is refused. Convert with
// time.Duration(d).
type Duration time.Duration

var durationType = reflect.TypeOf(Duration(0))

// String is the duration as the file would say it: "5m", not "5m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration string (no bare number: that is TOML's
// deprecated form only).
func (d *Duration) UnmarshalText(text []byte) error { return d.UnmarshalTOML(string(text)) }

// UnmarshalTOML reads a TOML value: a duration string, or a bare integer of
// seconds (deprecated). Its errors do not name the key: the decoder adds it.
func (d *Duration) UnmarshalTOML(v any) error {
	var got time.Duration
	switch v := v.(type) {
	case string:
		var err error
		if got, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("%q is not a duration: want a number and a unit (ns, us, ms, s, m, h) such as \"10s\", \"5m\" or \"1h30m\"", v)
		}
	case int64:
		if v > math.MaxInt64/int64(time.Second) || v < math.MinInt64/int64(time.Second) {
			return fmt.Errorf("%d seconds is out of range", v)
		}
		got = time.Duration(v) * time.Second
	default:
		return fmt.Errorf("want a duration string such as \"10s\", not a TOML %s", tomlType(v))
	}
	if got < 0 {
		return fmt.Errorf("%s: must not be negative", Duration(got))
	}
	*d = Duration(got)
	return nil
}

func tomlType(v any) string {
	switch v.(type) {
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "date-time"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

// bareSeconds warns about each Duration the file gave as a bare integer,
// in the order of the file. (A Duration in an array is read the same way
// but not reported: there is none.)
func bareSeconds(md toml.MetaData, cfg any) []Warning {
	var out []Warning
	for _, key := range md.Keys() {
		if md.Type(key...) != "Integer" {
			continue
		}
		v, ok := lookup(reflect.ValueOf(cfg), key)
		if !ok || v.Type() != durationType {
			continue
		}
		out = append(out, Warning{Key: key.String(), Msg: fmt.Sprintf(
			"a bare number of seconds is deprecated and a later release will refuse it: write %s = %q",
			key[len(key)-1], Duration(v.Int()).String())})
	}
	return out
}

// lookup finds the value a TOML key was decoded into, as the decoder does:
// a struct field by its toml tag, else by its name in any case; the fields
// of an embedded struct without a tag as the outer struct's; a map entry by
// its key.
func lookup(v reflect.Value, key toml.Key) (reflect.Value, bool) {
	for _, name := range key {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			f, ok := field(v, name)
			if !ok {
				return reflect.Value{}, false
			}
			v = f
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return reflect.Value{}, false
			}
			e := v.MapIndex(reflect.ValueOf(name).Convert(v.Type().Key()))
			if !e.IsValid() {
				return reflect.Value{}, false
			}
			v = e
		default:
			return reflect.Value{}, false
		}
	}
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v, true
}

func field(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case tag == "-":
		case f.Anonymous && tag == "":
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				if r, ok := field(fv, name); ok {
					return r, true
				}
			}
		case !f.IsExported():
		case tag == name, tag == "" && strings.EqualFold(f.Name, name):
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
