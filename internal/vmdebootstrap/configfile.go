package vmdebootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultConfigFiles are the files cliapp read for a program named
// vmdebootstrap (Settings.default_config_files), those that exist.
func DefaultConfigFiles() []string {
	l := []string{"/etc/vmdebootstrap.conf", "/etc/vmdebootstrap.yaml"}
	l = append(l, listConfs("/etc/vmdebootstrap")...)
	if home, err := os.UserHomeDir(); err == nil {
		l = append(l, filepath.Join(home, ".vmdebootstrap.conf"), filepath.Join(home, ".vmdebootstrap.yaml"))
		l = append(l, listConfs(filepath.Join(home, ".config", "vmdebootstrap"))...)
	}
	return l
}

// listConfs is cliapp's listconfs: the .conf and .yaml files of a
// directory, sorted by byte value.
func listConfs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var l []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".conf") || strings.HasSuffix(n, ".yaml") {
			l = append(l, filepath.Join(dir, n))
		}
	}
	sort.Strings(l)
	return l
}

// readConfigFile reads one config file into s, as cliapp's load_configs:
// YAML when the name ends in .yaml, INI otherwise. A file that does not
// exist is skipped unless it was named with --config.
func (s *Settings) readConfigFile(path string, required bool) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil
		}
		return err
	}
	defer f.Close()
	s.ConfigFiles = append(s.ConfigFiles, path)
	if strings.HasSuffix(path, ".yaml") {
		return s.readYAML(f, path)
	}
	values, other, err := ParseINI(f, path)
	if err != nil {
		return err
	}
	for _, sec := range other {
		s.note("%s: section [%s] ignored, as vmdebootstrap did (only [config] holds settings)", path, sec)
	}
	for _, kv := range values {
		st := lookupSetting(kv.key)
		if st == nil {
			return fmt.Errorf("%s:%d: unknown setting %q (see vmdeb vmdebootstrap --dump-setting-names)", path, kv.line, kv.key)
		}
		if err := s.setRaw(st, kv.value); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, kv.line, kv.key, err)
		}
	}
	return nil
}

// setRaw is cliapp's set_from_raw_string: a list splits at commas outside
// double quotes; the next command-line occurrence replaces it.
func (s *Settings) setRaw(st *setting, v string) error {
	switch st.kind {
	case kList:
		var vals []string
		cur, quoted := "", false
		for _, c := range v {
			switch {
			case c == '"':
				quoted = !quoted
			case c == ',' && !quoted:
				vals = append(vals, cur)
				cur = ""
			default:
				cur += string(c)
			}
		}
		if cur != "" {
			vals = append(vals, cur)
		}
		for i := range vals {
			vals[i] = strings.TrimSpace(vals[i])
		}
		s.lists[st.name] = vals
		s.fromConfig[st.name] = true
	case kBool:
		s.vals[st.name] = boolString(isTrue(v))
	case kInt:
		if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		s.vals[st.name] = strings.TrimSpace(v)
	default:
		s.vals[st.name] = v
	}
	s.set[st.name] = true
	return nil
}

// isTrue is cliapp's BooleanSetting: yes, on, 1, true in any case.
func isTrue(v string) bool {
	return contains([]string{"yes", "on", "1", "true"}, strings.ToLower(v))
}

func boolString(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// readYAML reads a cliapp YAML config: a mapping with a "config" mapping
// of settings (Settings._read_yaml); values are set as they are, a
// string for a list being one item.
func (s *Settings) readYAML(r io.Reader, path string) error {
	var doc map[string]any
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		return fmt.Errorf("%s: configuration file does not specify a key/value mapping: %v", path, err)
	}
	c, ok := doc["config"]
	if !ok {
		return fmt.Errorf("%s: configuration file does not have a \"config\" key", path)
	}
	m, ok := c.(map[string]any)
	if c != nil && !ok {
		return fmt.Errorf("%s: \"config\" is not a mapping", path)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		st := lookupSetting(k)
		if st == nil {
			return fmt.Errorf("%s: unknown setting %q (see vmdeb vmdebootstrap --dump-setting-names)", path, k)
		}
		switch v := m[k].(type) {
		case []any:
			if st.kind != kList {
				return fmt.Errorf("%s: %s takes one value, not a list", path, k)
			}
			var l []string
			for _, x := range v {
				l = append(l, fmt.Sprint(x))
			}
			s.lists[k] = l
			s.fromConfig[k] = true
		case bool:
			s.setValue(st, boolString(v))
		case nil:
			s.setValue(st, "")
		default:
			s.setValue(st, fmt.Sprint(v))
		}
		s.set[k] = true
	}
	return nil
}

// setValue is cliapp's set_value: a list gets one item.
func (s *Settings) setValue(st *setting, v string) {
	switch st.kind {
	case kList:
		s.lists[st.name] = []string{v}
		s.fromConfig[st.name] = true
	case kBool:
		s.vals[st.name] = boolString(isTrue(v))
	default:
		s.vals[st.name] = v
	}
}

type keyValue struct {
	key, value string
	line       int
}

// ParseINI reads an INI file as Python 2's ConfigParser did for cliapp:
// "key = value" or "key: value" under [section] headers, keys in any
// case, lines starting with # or ; are comments, and so is " ;..." after
// a value; an indented line continues the value before it. It returns
// the [config] settings in file order and the names of other sections.
func ParseINI(r io.Reader, file string) ([]keyValue, []string, error) {
	var out, defaults []keyValue
	var other []string
	sc := bufio.NewScanner(r)
	section, n := "", 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' || strings.HasPrefix(strings.ToLower(line), "rem ") {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			switch {
			case section == "":
				return nil, nil, fmt.Errorf("%s:%d: a setting before any [section] header", file, n)
			case section == "config" && len(out) > 0:
				out[len(out)-1].value += "\n" + line
			case section == "DEFAULT" && len(defaults) > 0:
				defaults[len(defaults)-1].value += "\n" + line
			}
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, nil, fmt.Errorf("%s:%d: a section header needs a closing ]", file, n)
			}
			section = line[1:end]
			if section != "config" && section != "DEFAULT" && !contains(other, section) {
				other = append(other, section)
			}
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, nil, fmt.Errorf("%s:%d: expected key = value", file, n)
		}
		if section == "" {
			return nil, nil, fmt.Errorf("%s:%d: a setting before any [section] header (settings belong in the [config] section)", file, n)
		}
		if section != "config" && section != "DEFAULT" {
			continue
		}
		v := strings.TrimSpace(line[i+1:])
		if j := strings.Index(v, ";"); j > 0 && (v[j-1] == ' ' || v[j-1] == '\t') {
			v = strings.TrimSpace(v[:j])
		}
		if v == `""` {
			v = ""
		}
		kv := keyValue{strings.ToLower(strings.TrimSpace(line[:i])), v, n}
		if section == "DEFAULT" {
			// [DEFAULT]'s keys are every section's, [config]'s own win.
			defaults = append(defaults, kv)
		} else {
			out = append(out, kv)
		}
	}
	return append(defaults, out...), other, sc.Err()
}
