package vmdebootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"vmdeb/internal/config"
)

func TestParseOptions(t *testing.T) {
	s, err := Parse([]string{"--image", "test.img", "--size", "3G", "--distribution", "bookworm", "--arch", "arm64",
		"--package", "vim", "--package", "less", "--user", "user/live", "--sudo", "--use-uefi", "--esp-size", "300M",
		"--grub", "--convert-qcow2", "--enable-dhcp", "--lock-root-password", "--debootstrapopts", "variant=buildd include=gnupg"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	y, err := s.YAML("/work")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatal(err)
	}
	out := m["outputs"].([]any)[0].(map[string]any)
	checks := map[string]any{"suite": m["suite"], "architecture": m["architecture"], "variant": m["variant"],
		"path": out["path"], "format": out["format"], "bootloader": out["bootloader"], "esp-size": out["esp-size"],
		"network": out["network"], "size": out["size"]}
	want := map[string]any{"suite": "bookworm", "architecture": "arm64", "variant": "buildd", "path": "/work/test.img",
		"format": "qcow2", "bootloader": "grub-uefi", "esp-size": "300M", "network": "ifupdown", "size": "3G"}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %v, want %v", k, checks[k], v)
		}
	}
	if !strings.Contains(y, "- gnupg\n") || !strings.Contains(y, "- vim\n") || !strings.Contains(y, "sudo: true") {
		t.Errorf("packages or user missing:\n%s", y)
	}
}

// Without variant= in --debootstrapopts the base system is debootstrap's
// default set, as vmdebootstrap's was: it has an init, so a disk image
// made from it boots (minbase has none).
func TestDefaultVariant(t *testing.T) {
	s, err := Parse([]string{"--image", "t.img", "--size", "3G", "--distribution", "trixie", "--grub", "--use-uefi"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := s.YAML("/work")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y, "\nvariant: important\n") {
		t.Errorf("want variant important:\n%s", y)
	}
}

func TestRejectedCombinations(t *testing.T) {
	cases := map[string][]string{
		"--squash cannot be used with --image":       {"--squash", "d", "--image", "a.img", "--size", "2G"},
		"--apt-mirror needs --configure-apt":         {"--tarball", "t.tgz", "--apt-mirror", "http://m.example/debian"},
		"--esp-size needs --use-uefi":                {"--image", "a.img", "--size", "2G", "--esp-size", "100M"},
		"--image needs --size":                       {"--image", "a.img"},
		"nothing to write":                           {"--distribution", "trixie"},
		"--sudo needs --user":                        {"--tarball", "t.tgz", "--sudo"},
		"contradict":                                 {"--tarball", "t.tgz", "--root-password", "x", "--lock-root-password"},
		"--convert-qcow2 needs --image":              {"--tarball", "t.tgz", "--convert-qcow2"},
		"--user takes NAME/PASSWORD":                 {"--tarball", "t.tgz", "--user", "bob"},
		"does not boot with UEFI":                    {"--image", "a.img", "--size", "2G", "--use-uefi", "--arch", "s390x"},
		"--size: \"lots\" is not a size":             {"--image", "a.img", "--size", "lots"},
		"--part-type \"dos\"":                        {"--image", "a.img", "--size", "2G", "--part-type", "dos"},
		"--no-kernel cannot make a bootable --image": {"--image", "a.img", "--size", "2G", "--no-kernel"},
		"--boottype needs --bootsize":                {"--image", "a.img", "--size", "2G", "--boottype", "ext2"},
	}
	for want, args := range cases {
		s, err := Parse(args)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
	if _, err := Parse([]string{"--imagee", "x"}); err == nil || !strings.Contains(err.Error(), "imagee") {
		t.Errorf("unknown option: %v", err)
	}
}

func TestINIConfig(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "vm.conf")
	os.WriteFile(ini, []byte(`# vmdebootstrap settings
[config]
image = vm.img
size = 2G
distribution = trixie
package = vim, less
sudo = yes
user = user/live
enable-dhcp = yes
`), 0o644)
	s, err := Parse([]string{"--config", ini, "--size", "5G"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Image != "vm.img" || s.Size != "5G" || s.Distribution != "trixie" || !s.Sudo || !s.EnableDHCP ||
		strings.Join(s.Packages, ",") != "vim,less" {
		t.Errorf("got %+v", s)
	}
	dump := s.INI()
	for _, w := range []string{"[config]\n", "image = vm.img\n", "size = 5G\n", "sudo = yes\n", "package = vim,less\n"} {
		if !strings.Contains(dump, w) {
			t.Errorf("dump-config lacks %q:\n%s", w, dump)
		}
	}
	// The dump reads back to the same settings.
	os.WriteFile(ini, []byte(dump), 0o644)
	s2, err := Parse([]string{"--config", ini})
	if err != nil || s2.Size != "5G" || strings.Join(s2.Packages, ",") != "vim,less" {
		t.Errorf("round trip: %+v %v", s2, err)
	}

	for content, want := range map[string]string{
		"image = x\n":               "[config] section",
		"[config]\nimagefile = x\n": `unknown setting "imagefile"`,
		"[config]\nsudo = maybe\n":  "not yes or no",
		"[config]\njust a line\n":   "expected key = value",
		"[config\nimage = x\n":      "closing ]",
	} {
		os.WriteFile(ini, []byte(content), 0o644)
		if _, err := Parse([]string{"--config", ini}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ini) {
			t.Errorf("%q: got %v, want %q", content, err, want)
		}
	}
}

// The YAML made from options loads as a valid vmdeb config.
func TestYAMLLoads(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\n"), 0o755)
	s, _ := Parse([]string{"--image", "vm.qcow2", "--size", "3G", "--convert-qcow2", "--tarball", "vm.tar.gz",
		"--distribution", "trixie", "--arch", "amd64", "--mirror", "http://m.example/debian", "--configure-apt",
		"--apt-mirror", "http://a.example/debian", "--customize", hook, "--swap", "512M", "--bootsize", "300M",
		"--part-type", "gpt", "--user", "u/p", "--sudo", "--root-password", "secret"})
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	y, err := s.YAML(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(y), 0o644)
	spec, err := config.Load(p)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	d := spec.Outputs[0]
	if d.Type != "disk" || d.DiskFormat() != "qcow2" || d.Size.Bytes != 3<<30 || d.SwapSize.Bytes != 512<<20 ||
		d.PartitionTable != "gpt" || spec.AptMirror != "http://a.example/debian" || spec.Root.Password != "secret" || spec.LockRoot() {
		t.Errorf("mapping: %+v %+v", spec, d)
	}
	if spec.Outputs[1].Type != "tarball" {
		t.Errorf("tarball output: %+v", spec.Outputs[1])
	}
}
