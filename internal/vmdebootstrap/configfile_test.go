package vmdebootstrap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every setting is a config key (cliapp settings.py:835 _read_ini:
// set_from_raw_string for each [config] option) with the same meaning as
// its option; a list's commas separate items (settings.py:154).
func TestConfigKeys(t *testing.T) {
	dir := t.TempDir()
	for _, st := range settings {
		t.Run(st.name, func(t *testing.T) {
			var ini string
			var args []string
			switch st.kind {
			case kBool:
				if st.def == "yes" {
					ini, args = "no", []string{"--no-" + st.name}
				} else {
					ini, args = "yes", []string{"--" + st.name}
				}
			case kList:
				ini, args = "a, b", []string{"--" + st.name, "a", "--" + st.name, "b"}
			case kSize:
				ini, args = "2G", []string{"--" + st.name, "2G"}
			case kInt:
				ini, args = "7", []string{"--" + st.name, "7"}
			case kChoice:
				ini, args = st.choices[1], []string{"--" + st.name, st.choices[1]}
			default:
				ini, args = "some value", []string{"--" + st.name, "some value"}
			}
			f := filepath.Join(dir, st.name+".conf")
			os.WriteFile(f, []byte("[config]\n"+st.name+" = "+ini+"\n"), 0o644)
			fromFile, err := ParseWith([]string{"--config", f}, nil)
			if err != nil {
				t.Fatal(err)
			}
			fromArgs, err := ParseWith(args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.kind == kList {
				if !slices.Equal(fromFile.List(st.name), fromArgs.List(st.name)) {
					t.Errorf("file %q, options %q", fromFile.List(st.name), fromArgs.List(st.name))
				}
				return
			}
			if fromFile.Str(st.name) != fromArgs.Str(st.name) || fromFile.Str(st.name) == newSettings().Str(st.name) {
				t.Errorf("file %q, options %q (default %q)", fromFile.Str(st.name), fromArgs.Str(st.name), newSettings().Str(st.name))
			}
		})
	}
}

func TestINIFiles(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "vm.conf")
	write := func(s string) { os.WriteFile(ini, []byte(s), 0o644) }

	// ConfigParser: keys in any case, ':' too, inline " ;" comments,
	// continuation lines, [DEFAULT] for every section, other sections
	// kept for the application (settings.py:842) and not vmdebootstrap's.
	write(`# vmdebootstrap settings
[DEFAULT]
hostname = fromdefault
distribution = bookworm

[config]
Image: vm.img   ; the disk
distribution = trixie
package = vim, "a,b",
  less
sudo = On
user = u/pw, v

[wandboard]
uboot = u-boot.imx
`)
	s, err := ParseWith([]string{"--config", ini}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Str("image") != "vm.img" || s.Str("distribution") != "trixie" || s.Str("hostname") != "fromdefault" || !s.Bool("sudo") {
		t.Errorf("%+v", s.vals)
	}
	if want := []string{"vim", "a,b", "less"}; !slices.Equal(s.List("package"), want) {
		t.Errorf("package %q, want %q", s.List("package"), want)
	}
	if want := []string{"u/pw", "v"}; !slices.Equal(s.List("user"), want) {
		t.Errorf("user %q, want %q", s.List("user"), want)
	}
	if !slices.ContainsFunc(s.notes, func(n string) bool { return strings.Contains(n, "[wandboard] ignored") }) {
		t.Errorf("notes %q", s.notes)
	}

	for content, want := range map[string]string{
		"image = x\n":               "before any [section]",
		"[config]\nimagefile = x\n": `unknown setting "imagefile"`,
		"[config]\njust a line\n":   "expected key = value",
		"[config\nimage = x\n":      "closing ]",
		"[config]\nlog-keep = x\n":  "not a whole number",
	} {
		write(content)
		if _, err := ParseWith([]string{"--config", ini}, nil); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ini) {
			t.Errorf("%q: got %v, want %q", content, err, want)
		}
	}
}

// cliapp reads NAME.yaml as YAML with a config mapping (settings.py:852).
func TestYAMLConfigFile(t *testing.T) {
	dir := t.TempDir()
	y := filepath.Join(dir, "vm.yaml")
	os.WriteFile(y, []byte("config:\n  image: vm.img\n  size: 3G\n  grub: true\n  package: [vim, less]\n  user: bob/pw\n"), 0o644)
	s, err := ParseWith([]string{"--config", y}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Str("image") != "vm.img" || s.Str("size") != "3G" || !s.Bool("grub") ||
		!slices.Equal(s.List("package"), []string{"vim", "less"}) || !slices.Equal(s.List("user"), []string{"bob/pw"}) {
		t.Errorf("%+v %+v", s.vals, s.lists)
	}
	os.WriteFile(y, []byte("image: vm.img\n"), 0o644)
	if _, err := ParseWith([]string{"--config", y}, nil); err == nil || !strings.Contains(err.Error(), `"config" key`) {
		t.Errorf("got %v", err)
	}
}

// The default files are read first, missing ones skipped; --config adds
// to them and --no-default-configs clears them (settings.py:574-599,
// :740 default_config_files, :814 load_configs).
func TestDefaultConfigFiles(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "etc.conf")
	os.WriteFile(def, []byte("[config]\nhostname = site\nroottype = ext3\n"), 0o644)
	mine := filepath.Join(dir, "mine.conf")
	os.WriteFile(mine, []byte("[config]\nhostname = mine\n"), 0o644)
	defaults := []string{def, filepath.Join(dir, "absent.conf")}

	s, err := ParseWith([]string{"--config", mine}, defaults)
	if err != nil {
		t.Fatal(err)
	}
	if s.Str("hostname") != "mine" || s.Str("roottype") != "ext3" || !slices.Equal(s.ConfigFiles, []string{def, mine}) {
		t.Errorf("%q %q %q", s.Str("hostname"), s.Str("roottype"), s.ConfigFiles)
	}
	s, err = ParseWith([]string{"--no-default-configs", "--config", mine}, defaults)
	if err != nil {
		t.Fatal(err)
	}
	if s.Str("roottype") != "ext4" || !slices.Equal(s.ConfigFiles, []string{mine}) {
		t.Errorf("%q %q", s.Str("roottype"), s.ConfigFiles)
	}

	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--list-config-files", "--config", mine}, Runner{Stdout: &out, DefaultConfigs: defaults}); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(append(defaults, mine), "\n") + "\n"; out.String() != want {
		t.Errorf("--list-config-files:\n%s\nwant\n%s", out.String(), want)
	}
}

// --dump-config writes what reads back to the same settings.
func TestDumpConfigRoundTrip(t *testing.T) {
	var out bytes.Buffer
	args := []string{"--image", "vm.img", "--size", "5G", "--package", "a,b", "--package", "c", "--grub", "--no-update-initramfs", "--dump-config"}
	if err := Run(context.Background(), args, Runner{Stdout: &out, DefaultConfigs: []string{}}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"[config]\n", "image = vm.img\n", "size = 5000000000\n", "grub = True\n", "update-initramfs = False\n", `package = "a,b", c` + "\n"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("dump lacks %q:\n%s", w, out.String())
		}
	}
	f := filepath.Join(t.TempDir(), "dump.conf")
	os.WriteFile(f, out.Bytes(), 0o644)
	s, err := ParseWith([]string{"--config", f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Bytes("size"); n != 5e9 || !s.Bool("grub") || s.Bool("update-initramfs") || !slices.Equal(s.List("package"), []string{"a,b", "c"}) {
		t.Errorf("read back: %+v %+v", s.vals, s.lists)
	}
}

// Sizes as cliapp's ByteSizeSetting read them (settings.py:217).
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1G": 1e9, "1g": 1e9, "1GiB": 1 << 30, "512M": 512e6, "512mib": 512 << 20,
		"1.5G": 15e8, "4096": 4096, "100 MB": 100e6, "5mib": 5 << 20} {
		if got, ok := ParseSize(in); !ok || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"lots", "0%", "-1G", "1P", ""} {
		if _, ok := ParseSize(in); ok {
			t.Errorf("%q read as a size", in)
		}
	}
}
