package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/deb"
)

// Hostile or careless input: each is refused with the file, the line and
// the key, and says what would be valid.
func TestHostileInput(t *testing.T) {
	long := strings.Repeat("a", 250)
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"newline in password", strings.Replace(good, "password: live", "password: \"live\\nroot:owned\"", 1),
			[]string{":7: users[0].password: the value contains a control character"}},
		{"newline in password-hash", strings.Replace(good, "password: live", "password-hash: \"$6$x$y\\nroot:$6$a$b\"", 1),
			[]string{":7: users[0].password-hash: the value contains a control character"}},
		{"colon in password-hash", strings.Replace(good, "password: live", "password-hash: \"$6$x$y:0:0\"", 1),
			[]string{":7: users[0].password-hash: expected a crypt(3) hash"}},
		{"newline in shell", strings.Replace(good, "sudo: true", "sudo: true\n    shell: \"/bin/sh\\nroot::0:0::/:/bin/sh\"", 1),
			[]string{":9: users[0].shell:", "control character"}},
		{"newline in root password", good + "root:\n  password: \"x\\ny\"\n",
			[]string{":14: root.password: the value contains a control character"}},
		{"apt options in apt-mirror", good + "apt-mirror: \"[trusted=yes] http://m.example/debian\"\n",
			[]string{":13: apt-mirror:", "not a mirror URL", "brackets"}},
		{"space in mirror", good + "mirror: \"http://m.example/debian trixie main\"\n",
			[]string{":13: mirror:", "not a mirror URL"}},
		{"mirror not a URL", good + "mirror: \"ftp://m.example/debian\"\n",
			[]string{":13: mirror:", "not a mirror URL", "http://HOST/PATH"}},
		{"second document", good + "---\nname: other\n",
			[]string{":13:", "second YAML document"}},
		{"long name", strings.Replace(good, "name: test-image", "name: "+long, 1),
			[]string{":1: name: 250 characters: at most 200"}},
		{"long output name", strings.Replace(good, "path: out/test.iso", "path: out/"+long+".iso", 1),
			[]string{":12: outputs[0].path:", "at most 200"}},
		{"hook with arguments", strings.Replace(good, "customise: hook.sh", "customise: hook.sh --verbose", 1),
			[]string{":9: customise:", "takes no arguments"}},
		{"disk larger than the free space", strings.Replace(good, "type: live-iso\n    path: out/test.iso", "type: disk\n    path: out/test.img\n    size: 999T", 1),
			[]string{":13: outputs[0].size: 999 TiB is larger than the free space", "full size"}},
		{"not a deb", good + "custom-packages: [junk.deb]\n",
			[]string{":13: custom-packages[0]:", "junk.deb: not a Debian package"}},
		{"deb of another architecture", good + "custom-packages: [arm.deb]\n",
			[]string{":13: custom-packages[0]:", "for arm64, and the image is amd64"}},
		{"hostname label too long", good + "hostname: " + strings.Repeat("h", 64) + ".example.org\n",
			[]string{":13: hostname:", "each 1 to 63"}},
		{"hostname empty label", good + "hostname: web..example.org\n",
			[]string{":13: hostname:", "not a valid host name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.yaml)
			dir := filepath.Dir(p)
			os.WriteFile(filepath.Join(dir, "junk.deb"), []byte("#!/bin/sh\necho not a package\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "arm.deb"), buildDeb(t, "arm64"), 0o644)
			_, err := Load(p)
			if err == nil {
				t.Fatalf("no error for\n%s", c.yaml)
			}
			msg := err.Error()
			if !strings.Contains(msg, p) {
				t.Errorf("error does not name the file %s: %s", p, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "root:owned") || strings.Contains(msg, "$6$a$b") {
				t.Errorf("the error shows the password: %s", msg)
			}
		})
	}
}

func buildDeb(t *testing.T, arch string) []byte {
	b, err := deb.Build(&deb.Package{Name: "local", Version: "1", Architecture: arch, Maintainer: "T <t@example.org>", Description: "test"}, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What is legitimate stays accepted: an FQDN (short name in /etc/hostname,
// both in /etc/hosts), credentials in a mirror URL, a real .deb, a hash.
func TestLegitimateInputAccepted(t *testing.T) {
	y := strings.Replace(good, "password: live", "password-hash: \"$6$rounds=5000$salt$abc./XYZ\"", 1) +
		"hostname: web1.example.org\nmirror: \"http://user:p%40ss@m.example:8080/debian/\"\ncustom-packages: [local.deb]\n"
	p := write(t, y)
	os.WriteFile(filepath.Join(filepath.Dir(p), "local.deb"), buildDeb(t, "all"), 0o644)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.ShortHostname() != "web1" || s.HostsNames() != "web1.example.org web1" {
		t.Errorf("short %q, hosts %q", s.ShortHostname(), s.HostsNames())
	}
	s.Hostname = "debian"
	if s.ShortHostname() != "debian" || s.HostsNames() != "debian" {
		t.Errorf("short %q, hosts %q", s.ShortHostname(), s.HostsNames())
	}
}

// A file over the size cap is refused before it is decoded.
func TestConfigTooLarge(t *testing.T) {
	p := write(t, good+"# "+strings.Repeat("x", MaxConfigSize)+"\n")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+": larger than 1024 KiB") {
		t.Fatalf("want a size error naming the file, got %v", err)
	}
}

// aliasBomb is a config of n aliases, each of a long string: decoded and
// validated as is, it made check work for minutes.
func aliasBomb(n, width int) string {
	var b strings.Builder
	b.WriteString(good)
	b.WriteString("live:\n  kernel-params:\n    - &x " + strings.Repeat("p", width) + "\n")
	for i := 0; i < n; i++ {
		b.WriteString("    - *x\n")
	}
	return b.String()
}

// billionLaughs nests aliases so a few lines expand to gigabytes.
const billionLaughs = `name: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
`

// The bombs are refused quickly and in little memory.
func TestAliasBombBounded(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"20000 aliases", aliasBomb(20000, 8), "more than 1000 aliases"},
		{"aliases of a long string", aliasBomb(900, 64<<10), "expand to more than 4 MiB"},
		{"billion laughs", billionLaughs, "expand to more than 4 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Parse([]byte(c.yaml), "/bomb.yaml")
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "/bomb.yaml:") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want %q naming the file and line, got %v", c.want, err)
			}
			if took > 2*time.Second {
				t.Errorf("took %s (at most 2 s)", took)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("allocated %d MiB (at most 256)", alloc>>20)
			}
		})
	}
}
