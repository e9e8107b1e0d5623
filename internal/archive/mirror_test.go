package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"vmdeb/internal/buildlog"
)

// testFile is one entry of a test package's data archive.
type testFile struct {
	name, body, link string
	typ              byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink
	mode             int64
}

// testPkg is a package of the test mirror.
type testPkg struct {
	name, version, arch string
	fields              string // extra Packages/control fields, "Key: value\n" each
	files               []testFile
	comp                string // data.tar compression: xz (default), zst, gz, none
}

// buildDeb makes a .deb: debian-binary, control.tar.gz, data.tar.COMP.
func buildDeb(t testing.TB, p testPkg) []byte {
	t.Helper()
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: test\nDescription: test\n%s", p.name, p.version, p.arch, p.fields)
	ctl := tarball(t, []testFile{{name: "./control", body: control, mode: 0o644}})
	var cz bytes.Buffer
	zw := gzip.NewWriter(&cz)
	zw.Write(ctl)
	zw.Close()
	data := tarball(t, p.files)
	var dz bytes.Buffer
	member := "data.tar.xz"
	switch p.comp {
	case "", "xz":
		w, err := xz.NewWriter(&dz)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "zst":
		member = "data.tar.zst"
		w, _ := zstd.NewWriter(&dz)
		w.Write(data)
		w.Close()
	case "gz":
		member = "data.tar.gz"
		w := gzip.NewWriter(&dz)
		w.Write(data)
		w.Close()
	case "none":
		member = "data.tar"
		dz.Write(data)
	}
	var out bytes.Buffer
	out.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", cz.Bytes()}, {member, dz.Bytes()}} {
		out.WriteString(arHeader(m.name, int64(len(m.data))))
		out.Write(m.data)
		if len(m.data)%2 == 1 {
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func tarball(t testing.TB, files []testFile) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: mode, Linkname: f.link, ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(f.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// testMirror is a small signed archive served on 127.0.0.1.
type testMirror struct {
	t       testing.TB
	root    string // files served
	Suite   string
	key     *openpgp.Entity
	Keyring string // public keyring file
	srv     *httptest.Server
	hits    atomic.Int64
	// handler, when set, answers instead of the file server (for faults).
	handler func(w http.ResponseWriter, r *http.Request) bool
}

func newKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", "archive@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeKeyring(t testing.TB, path string, keys ...*openpgp.Entity) {
	t.Helper()
	var b bytes.Buffer
	for _, k := range keys {
		if err := k.Serialize(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newMirror writes pkgs as suite "testing" (main, amd64), signs it and
// serves it.
func newMirror(t testing.TB, pkgs []testPkg) *testMirror {
	t.Helper()
	m := &testMirror{t: t, root: t.TempDir(), Suite: "trixie", key: newKey(t, "Test Archive Key")}
	m.Keyring = filepath.Join(t.TempDir(), "keyring.gpg")
	writeKeyring(t, m.Keyring, m.key)
	var idx strings.Builder
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].name < pkgs[j].name })
	for _, p := range pkgs {
		if p.arch == "" {
			p.arch = "amd64"
		}
		deb := buildDeb(t, p)
		fn := fmt.Sprintf("pool/main/%s/%s_%s_%s.deb", p.name[:1], p.name, p.version, p.arch)
		m.write(fn, deb)
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: %s\n%sFilename: %s\nSize: %d\nSHA256: %s\nDescription: test package\n with a continuation line\n\n",
			p.name, p.version, p.arch, p.fields, fn, len(deb), sha(deb))
	}
	m.writeIndex([]byte(idx.String()))
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		if m.handler != nil && m.handler(w, r) {
			return
		}
		http.FileServer(http.Dir(m.root)).ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *testMirror) URL() string { return m.srv.URL + "/debian" }

func (m *testMirror) write(rel string, data []byte) {
	p := filepath.Join(m.root, "debian", rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		m.t.Fatal(err)
	}
}

func (m *testMirror) read(rel string) []byte {
	data, err := os.ReadFile(filepath.Join(m.root, "debian", rel))
	if err != nil {
		m.t.Fatal(err)
	}
	return data
}

// writeIndex writes Packages and Packages.gz (also by hash) and a signed
// InRelease listing them.
func (m *testMirror) writeIndex(plain []byte) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	dir := "dists/" + m.Suite + "/main/binary-amd64/"
	m.write(dir+"Packages", plain)
	m.write(dir+"Packages.gz", gz.Bytes())
	m.write(dir+"by-hash/SHA256/"+sha(plain), plain)
	m.write(dir+"by-hash/SHA256/"+sha(gz.Bytes()), gz.Bytes())
	rel := fmt.Sprintf("Origin: Test\nLabel: Test\nSuite: stable\nCodename: %s\nDate: %s\nAcquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main contrib\nDescription: test\nSHA256:\n %s %d main/binary-amd64/Packages\n %s %d main/binary-amd64/Packages.gz\n",
		m.Suite, time.Now().UTC().Format(time.RFC1123), sha(plain), len(plain), sha(gz.Bytes()), gz.Len())
	m.write("dists/"+m.Suite+"/Release", []byte(rel))
	m.write("dists/"+m.Suite+"/InRelease", m.sign(m.key, rel))
}

func (m *testMirror) sign(key *openpgp.Entity, text string) []byte {
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, key.PrivateKey, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	w.Write([]byte(text))
	w.Close()
	return b.Bytes()
}

func (m *testMirror) source() Source {
	return Source{Mirror: m.URL(), Suite: m.Suite, Components: []string{"main"}, Arch: "amd64", Keyring: m.Keyring}
}

// testLog returns a Log whose terminal output is kept in buf.
func testLog(buf *bytes.Buffer) *buildlog.Log { return buildlog.New(nil, "", buf) }

func quickClient() *Client {
	c := NewClient()
	c.Backoff = 10 * time.Millisecond
	c.Stall = 2 * time.Second
	return c
}
