package config

import (
	"reflect"
	"slices"
	"testing"
)

// Every key of Spec (recursively: live:, root:, users[], outputs[],
// builder:) has a description, and every description is of a key that
// exists: vmdeb.yaml(5) cannot miss a key or describe one that is gone.
func TestEveryKeyDescribed(t *testing.T) {
	var paths []string
	walkKeys(reflect.TypeOf(Spec{}), "", func(path, _ string, _ reflect.Type) { paths = append(paths, path) })
	paths = append(paths, "include")
	for _, want := range []string{"name", "live.title", "root.lock", "users[].name", "outputs[].bootloader", "builder.scratch-size"} {
		if !slices.Contains(paths, want) {
			t.Errorf("the walk over Spec's yaml tags misses %s: %v", want, paths)
		}
	}
	for _, p := range paths {
		if d, ok := keyText[p]; !ok || d.text == "" {
			t.Errorf("config key %s has no description in keyText (keys.go)", p)
		}
	}
	for p := range keyText {
		if !slices.Contains(paths, p) {
			t.Errorf("keyText describes %s, which is no config key", p)
		}
	}
	for p := range keyValues() {
		if !slices.Contains(paths, p) {
			t.Errorf("keyValues lists values of %s, which is no config key", p)
		}
	}
	if got := len(Keys()); got != len(paths) {
		t.Errorf("Keys() has %d keys, the walk %d", got, len(paths))
	}
}

// Every key of an enumerated type (Variant, OutputType, disk.Bootloader,
// ...) lists its valid values, and they are the ones validation takes.
func TestEnumeratedKeysHaveValues(t *testing.T) {
	enum := map[string]bool{}
	walkKeys(reflect.TypeOf(Spec{}), "", func(path, _ string, ft reflect.Type) {
		if ft.Kind() == reflect.String && ft.PkgPath() != "" {
			enum[path] = true
		}
	})
	if len(enum) < 9 {
		t.Fatalf("found only %d enumerated keys: %v", len(enum), enum)
	}
	keys := map[string]Key{}
	for _, k := range Keys() {
		keys[k.Path] = k
	}
	for p := range enum {
		if len(keys[p].Values) == 0 {
			t.Errorf("enumerated key %s lists no valid values (keyValues in keys.go)", p)
		}
	}
	for _, c := range []struct {
		key  string
		want []string
	}{
		{"variant", strs(Variants)},
		{"outputs[].type", strs(OutputTypes)},
		{"isolation", strs(Isolations)},
		{"bootstrap", strs(Backends)},
		{"insecure", []string{"true", "false"}},
	} {
		if !slices.Equal(keys[c.key].Values, c.want) {
			t.Errorf("%s: values %v, want %v", c.key, keys[c.key].Values, c.want)
		}
	}
	for _, k := range Keys() {
		if k.Disk && !slices.Contains([]string{"outputs[]"}, k.Path[:min(len(k.Path), 9)]) {
			t.Errorf("%s is marked a disk output key but is no output key", k.Path)
		}
	}
}
