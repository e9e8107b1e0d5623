package integration

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attackerPostinst plants, from inside the image, an absolute link at each
// path vmdeb itself writes, removes, renames or re-dates after the
// packages are installed (system, finalise, teardown), each pointing at
// the same path under @V@ — a directory of victims on the host. What was
// there moves to that path inside the image, so the image's own programs
// (apt, ldconfig) still work through the link: only a vmdeb that follows
// the link on the host side reaches the victims.
const attackerPostinst = `#!/bin/sh
set -e
[ "$1" = configure ] || exit 0
V=@V@
mkdir -p "$V"
swap() { # swap PATH NAME [dir]
	rm -rf "$V/$2"
	if [ -e "$1" ] || [ -L "$1" ]; then
		mv "$1" "$V/$2"
	elif [ "$3" = dir ]; then
		mkdir -p "$V/$2"
	fi
	mkdir -p "$(dirname "$1")"
	ln -s "$V/$2" "$1"
}
swap /etc/hostname hostname
swap /etc/hosts hosts
swap /etc/machine-id machine-id
swap /etc/resolv.conf resolv.conf
swap /usr/sbin/policy-rc.d policy-rc.d
swap /etc/apt apt dir
swap /var/lib/apt/lists lists dir
swap /var/log/apt log-apt dir
swap /var/cache/ldconfig ldconfig dir
swap /var/cache/debconf debconf dir
swap /var/lib/dbus dbus dir
swap /var/cache/apt cache-apt dir
swap /etc/dpkg/dpkg.cfg.d dpkg.cfg.d dir
mkdir -p /usr/local/share/fonts/truetype
swap /usr/local/share share dir
echo planted > /etc/vmdeb-attacker-ran
`

// hostVictims are the host's files and directories under V that the links
// lead to, named as the links name them.
var hostVictims = map[string]string{
	"hostname":                             "host's hostname\n",
	"hosts":                                "127.0.0.1 the host's hosts\n",
	"machine-id":                           "0123456789abcdef0123456789abcdef\n",
	"resolv.conf":                          "nameserver 192.0.2.53\n",
	"policy-rc.d":                          "#!/bin/sh\nexit 0\n",
	"apt/sources.list":                     "deb file:/srv/host-mirror host main\n",
	"apt/sources.list.vmdeb-orig":          "# the host's\n",
	"apt/sources.list.d/host.sources":      "Types: deb\nURIs: file:/srv/host-mirror\nSuites: host\nComponents: main\n",
	"apt/sources.list.d.vmdeb-orig/x.list": "# the host's\n",
	"apt/trusted.gpg.d/host.asc":           "not a key\n",
	"lists/_srv_host-mirror_dists_host_InRelease": "host's list\n",
	"lists/lock":                          "",
	"log-apt/history.log":                 "host's apt history\n",
	"log-apt/term.log":                    "host's apt log\n",
	"log-apt/eipp.log.xz":                 "host's eipp\n",
	"ldconfig/aux-cache":                  "host's aux-cache\n",
	"debconf/config.dat":                  "host's debconf\n",
	"debconf/config.dat-old":              "host's debconf\n",
	"debconf/templates.dat-old":           "host's templates\n",
	"dbus/machine-id":                     "fedcba9876543210fedcba9876543210\n",
	"share/fonts/truetype/host.ttf":       "host's font\n",
	"share/fonts/truetype/sub/x.ttf":      "host's font\n",
	"cache-apt/pkgcache.bin":              "host's apt cache\n",
	"cache-apt/archives/host_1.0_all.deb": "host's package\n",
	// The option the native bootstrapper gives dpkg for the build.
	"dpkg.cfg.d/vmdeb-build-unsafe-io": "# the host's\n",
}

// TestHostilePackage: a custom package whose postinst turns every path
// vmdeb touches after the packages into an absolute link to a host file
// or directory. The host's files stay as they were, byte for byte and
// date for date; the image gets its own hostname, hosts and machine-id
// (replacing the links) with the modes they must have even under umask
// 077; and a config with no other packages still installs the custom one.
func TestHostilePackage(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, work, v := t.TempDir(), t.TempDir(), t.TempDir()

	// The victims, dated now (after SOURCE_DATE_EPOCH, so clamping would
	// change them) with nanoseconds (which the font-cache step truncates).
	for name, data := range hostVictims {
		p := filepath.Join(v, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(v, "lists/partial"), 0o700)
	stamp := time.Now().Add(-time.Hour).Truncate(time.Second).Add(123456789)
	filepath.WalkDir(v, func(p string, _ fs.DirEntry, _ error) error { return os.Chtimes(p, stamp, stamp) })
	before := hostTree(t, v)

	deb := attackerDeb(t, dir, v)
	cfg := writeConfig(t, dir, `name: hostile
suite: trixie
architecture: amd64
variant: minbase
bootstrap: native
kernel: none
hostname: attacked
custom-packages: [`+filepath.Base(deb)+`]
outputs:
  - {type: tarball, path: hostile.tar}
`, nil)
	// umask 077: the image's files still get the modes they must have.
	cmd := exec.CommandContext(ctx, "sh", "-c", `umask 077 && exec "$0" "$@"`, vmdeb, "build", "--workdir", work, cfg)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	r := runCmd(t, cmd, "umask 077; vmdeb build "+cfg)

	after := hostTree(t, v)
	for _, d := range diffTrees(before, after) {
		t.Errorf("host file changed through a link in the image: %s", d)
	}
	assertClean(t, work)
	if r.code != 0 {
		// Refusing is acceptable only with a message that says why.
		if !strings.Contains(r.stderr, "link") {
			t.Fatalf("build failed (status %d) without naming the link:\n%s", r.code, r.stderr)
		}
		return
	}

	man, _ := os.ReadFile(filepath.Join(dir, "hostile.packages"))
	if !strings.Contains(string(man), "vmdeb-attacker\t1.0\n") {
		t.Errorf("custom package not installed (no other packages in the config); manifest:\n%s", man)
	}
	for _, step := range []string{"fontconfig: ", "set to SOURCE_DATE_EPOCH"} {
		if !strings.Contains(r.stdout, step) {
			t.Errorf("the build did not run the step that prints %q", step)
		}
	}
	img := tarEntries(t, filepath.Join(dir, "hostile.tar"))
	// Inside the image the links lead where the image's root makes them
	// lead: the final sources and the removal of the build's apt lists
	// and dpkg option happened there.
	inImage := "./" + strings.TrimPrefix(v, "/") + "/"
	if e, ok := img[inImage+"apt/sources.list.d/debian.sources"]; !ok || e.Typeflag != tar.TypeReg {
		t.Errorf("the image's apt (etc/apt -> %sapt) has no final sources", inImage[1:])
	}
	for name := range img {
		if strings.HasPrefix(name, inImage+"lists/") && strings.Contains(path.Base(name), "_") || path.Base(name) == "vmdeb-build-unsafe-io" {
			t.Errorf("a file of the build left in the image: %s", name)
		}
	}
	if e, ok := img["./etc/vmdeb-attacker-ran"]; !ok || e.Typeflag != tar.TypeReg {
		t.Errorf("the package's postinst did not run: etc/vmdeb-attacker-ran %+v", e)
	}
	want := []struct {
		name string
		mode int64
		data string
	}{
		{"./etc/hostname", 0o644, "attacked\n"},
		{"./etc/hosts", 0o644, "127.0.1.1\tattacked\n"},
		{"./etc/machine-id", 0o444, ""},
	}
	for _, w := range want {
		e, ok := img[w.name]
		switch {
		case !ok:
			t.Errorf("%s: not in the image", w.name)
		case e.Typeflag != tar.TypeReg:
			t.Errorf("%s: a link to %q in the image, want the file vmdeb wrote", w.name, e.Linkname)
		case e.Mode&0o7777 != w.mode:
			t.Errorf("%s: mode %04o, want %04o (built under umask 077)", w.name, e.Mode&0o7777, w.mode)
		case w.data == "" && e.Size != 0, w.data != "" && !strings.Contains(e.data, w.data):
			t.Errorf("%s: %q, want %q", w.name, e.data, w.data)
		}
	}
}

// attackerDeb builds the package vmdeb-attacker with its postinst aimed
// at the victims under v, in dir.
func attackerDeb(t *testing.T, dir, v string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "pkg")
	files := map[string]string{
		"DEBIAN/control": "Package: vmdeb-attacker\nVersion: 1.0\nArchitecture: all\n" +
			"Maintainer: Nobody <nobody@invalid>\nDescription: plants links out of the image\n",
		"DEBIAN/postinst": strings.ReplaceAll(attackerPostinst, "@V@", v),
		// The font-cache step runs only where fc-cache is.
		"usr/bin/fc-cache": "#!/bin/sh\nexit 0\n",
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(src, "DEBIAN/control"), 0o644)
	deb := filepath.Join(dir, "vmdeb-attacker_1.0_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", src, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// hostTree describes every file and directory under dir: type, mode,
// owner, modification time to the nanosecond and a hash of the content.
func hostTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid %d gid %d mtime %s", fi.Mode(), st.Uid, st.Gid, fi.ModTime().Format(time.RFC3339Nano))
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha256 %x", sha256.Sum256(data))
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// diffTrees lists what was removed, added or changed between two
// hostTree results.
func diffTrees(a, b map[string]string) []string {
	var d []string
	for k, va := range a {
		vb, ok := b[k]
		switch {
		case !ok:
			d = append(d, k+": deleted")
		case va != vb:
			d = append(d, fmt.Sprintf("%s: %s, was %s", k, vb, va))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+": created")
		}
	}
	sort.Strings(d)
	return d
}

type tarEntry struct {
	*tar.Header
	data string
}

// tarEntries reads a tar archive's headers, with the content of the
// regular files under etc/.
func tarEntries(t *testing.T, path string) map[string]tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]tarEntry{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		e := tarEntry{Header: h}
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, "./etc/") {
			data, _ := io.ReadAll(tr)
			e.data = string(data)
		}
		m[h.Name] = e
	}
	return m
}
