package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var basePkgs = []testPkg{
	{name: "base-files", version: "13", fields: "Priority: required\nEssential: yes\n", files: []testFile{{name: "./etc/", typ: tar.TypeDir}, {name: "./etc/debian_version", body: "13.0\n"}}},
	{name: "libc6", version: "2.41-1", fields: "Priority: optional\nMulti-Arch: same\n", comp: "zst", files: []testFile{{name: "./usr/", typ: tar.TypeDir}, {name: "./usr/lib/", typ: tar.TypeDir}, {name: "./usr/lib/libc.so.6", body: "ELF"}}},
	{name: "dash", version: "0.5.12-9", fields: "Priority: required\nEssential: yes\nPre-Depends: libc6 (>= 2.34)\n", comp: "gz", files: []testFile{{name: "./usr/bin/", typ: tar.TypeDir}, {name: "./usr/bin/dash", body: "#!dash", mode: 0o755}}},
	{name: "apt", version: "3.0.3", fields: "Priority: important\nDepends: libc6, gpgv | gpgv2, awk\n", files: []testFile{{name: "./usr/bin/apt", body: "apt", mode: 0o755}}},
	{name: "gpgv", version: "2.4.7-21", fields: "Priority: optional\nDepends: libc6 (>= 2.38)\n", comp: "none", files: []testFile{{name: "./usr/bin/gpgv", body: "gpgv"}}},
	{name: "gpgv2", version: "2.4.7-21", fields: "Priority: optional\n", files: []testFile{{name: "./usr/share/doc/gpgv2/x", body: "x"}}},
	{name: "mawk", version: "1.3.4", fields: "Priority: required\nProvides: awk\n", files: []testFile{{name: "./usr/bin/mawk", body: "mawk"}}},
	{name: "gawk", version: "5.2", fields: "Priority: optional\nProvides: awk\n", files: []testFile{{name: "./usr/bin/gawk", body: "gawk"}}},
}

func openTest(t *testing.T, m *testMirror, src Source, log *bytes.Buffer) (*Archive, error) {
	t.Helper()
	cache, err := OpenCache(filepath.Join(t.TempDir(), "cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return Open(context.Background(), src, quickClient(), cache, testLog(log))
}

func TestOpenVerifiesAndReads(t *testing.T) {
	m := newMirror(t, basePkgs)
	var log bytes.Buffer
	a, err := openTest(t, m, m.source(), &log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Signer, "Test Archive Key") {
		t.Errorf("signer %q", a.Signer)
	}
	if a.Index.Len() != len(basePkgs) {
		t.Errorf("%d packages, want %d", a.Index.Len(), len(basePkgs))
	}
	if c := a.Index.Candidate("dash"); c == nil || c.PreDepends != "libc6 (>= 2.34)" {
		t.Errorf("dash: %+v", c)
	}
}

func TestTamperedInReleaseRefused(t *testing.T) {
	m := newMirror(t, basePkgs)
	in := m.read("dists/trixie/InRelease")
	// Change one byte of the signed text: a different hash of the index.
	i := bytes.Index(in, []byte("main/binary-amd64/Packages.gz"))
	j := bytes.LastIndex(in[:i], []byte("\n ")) + 2
	if in[j] == '0' {
		in[j] = '1'
	} else {
		in[j] = '0'
	}
	m.write("dists/trixie/InRelease", in)
	var log bytes.Buffer
	_, err := openTest(t, m, m.source(), &log)
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.HasSuffix(ve.File, "dists/trixie/InRelease") || !strings.Contains(err.Error(), "BAD signature") {
		t.Fatalf("want a BAD signature error naming InRelease, got %v", err)
	}
}

func TestUnsignedOrWronglySignedRefused(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		in         func(m *testMirror) []byte
	}{
		{"unsigned", "not signed", func(m *testMirror) []byte { return m.read("dists/trixie/Release") }},
		{"other key", "no valid signature", func(m *testMirror) []byte {
			return m.sign(newKey(t, "Mallory"), string(m.read("dists/trixie/Release")))
		}},
		{"text after signature", "text after the signature", func(m *testMirror) []byte {
			return append(m.read("dists/trixie/InRelease"), []byte("SHA256:\n 00 1 main/binary-amd64/Packages\n")...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirror(t, basePkgs)
			m.write("dists/trixie/InRelease", tc.in(m))
			var log bytes.Buffer
			_, err := openTest(t, m, m.source(), &log)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/dists/trixie/InRelease") {
				t.Fatalf("want %q naming InRelease, got %v", tc.want, err)
			}
			// insecure: accepted, loudly.
			src := m.source()
			src.Insecure = true
			log.Reset()
			a, err := openTest(t, m, src, &log)
			if tc.name == "text after signature" {
				return
			}
			if err != nil {
				t.Fatalf("insecure: %v", err)
			}
			if a.Index.Len() == 0 || !strings.Contains(log.String(), "WARNING") || !strings.Contains(log.String(), "NOT verified") {
				t.Errorf("insecure accepted silently: %q", log.String())
			}
		})
	}
}

func TestMissingKeyringRefused(t *testing.T) {
	m := newMirror(t, basePkgs)
	src := m.source()
	src.Keyring = filepath.Join(t.TempDir(), "none.gpg")
	var log bytes.Buffer
	if _, err := openTest(t, m, src, &log); err == nil || !strings.Contains(err.Error(), "none.gpg") {
		t.Fatalf("got %v", err)
	}
}

func TestPackagesHashMismatchRefused(t *testing.T) {
	m := newMirror(t, basePkgs)
	// The mirror serves another index than the Release lists (both the
	// plain and the by-hash name).
	bad := []byte("Package: evil\nVersion: 1\nArchitecture: amd64\nFilename: x\nSize: 1\nSHA256: " + strings.Repeat("0", 64) + "\n")
	m.handler = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "binary-amd64/") {
			var gz bytes.Buffer
			w.Write(gzipBytes(&gz, bad))
			return true
		}
		return false
	}
	var log bytes.Buffer
	_, err := openTest(t, m, m.source(), &log)
	var he *HashError
	if !errors.As(err, &he) || he.File != "dists/trixie/main/binary-amd64/Packages.gz" || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("want a hash error naming Packages.gz, got %v", err)
	}
}

func TestDebHashMismatchRefused(t *testing.T) {
	m := newMirror(t, basePkgs)
	fn := "pool/main/d/dash_0.5.12-9_amd64.deb"
	deb := m.read(fn)
	deb[len(deb)-1] ^= 0xff // same size, other content
	m.write(fn, deb)
	var log bytes.Buffer
	a, err := openTest(t, m, m.source(), &log)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Download(context.Background(), []*Package{a.Index.Candidate("dash"), a.Index.Candidate("mawk")}, 2, nil)
	var he *HashError
	if !errors.As(err, &he) || he.File != fn || !strings.Contains(err.Error(), fn) {
		t.Fatalf("want a hash error naming %s, got %v", fn, err)
	}
	if fi, err := os.Stat(a.cache.Path(a.Index.Candidate("dash").SHA256)); err == nil {
		t.Errorf("the refused file is in the cache: %v", fi)
	}
}

func gzipBytes(buf *bytes.Buffer, b []byte) []byte {
	zw := gzip.NewWriter(buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestWarmReadUsesCache(t *testing.T) {
	m := newMirror(t, basePkgs)
	cache, err := OpenCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	a, err := Open(context.Background(), m.source(), quickClient(), cache, testLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Download(context.Background(), a.Index.All(), 4, nil); err != nil {
		t.Fatal(err)
	}
	m.hits.Store(0)
	a, err = Open(context.Background(), m.source(), quickClient(), cache, testLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Download(context.Background(), a.Index.All(), 4, nil); err != nil {
		t.Fatal(err)
	}
	if n := m.hits.Load(); n != 1 {
		t.Errorf("a warm run made %d requests, want 1 (InRelease only)", n)
	}
}

func TestFetchRetriesAndGivesUp(t *testing.T) {
	m := newMirror(t, basePkgs)
	fails := 2
	m.handler = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "InRelease") && fails > 0 {
			fails--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	var log bytes.Buffer
	if _, err := openTest(t, m, m.source(), &log); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	src := m.source()
	src.Suite = "nosuch"
	if _, err := openTest(t, m, src, &log); err == nil || !strings.Contains(err.Error(), "no suite nosuch") {
		t.Fatalf("got %v", err)
	}
}

func TestFetchStallIsCut(t *testing.T) {
	m := newMirror(t, basePkgs)
	m.handler = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".deb") {
			w.Header().Set("Content-Length", "100000")
			w.Write([]byte("!<arch>\n"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return true
		}
		return false
	}
	cache, _ := OpenCache(t.TempDir(), nil)
	var log bytes.Buffer
	cl := quickClient()
	cl.Stall = 300 * time.Millisecond
	cl.Retries = 1
	a, err := Open(context.Background(), m.source(), cl, cache, testLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.Fetch(context.Background(), a.Index.Candidate("dash"))
	// The first window has the 8 bytes, the next none: either cuts it.
	if err == nil || !(strings.Contains(err.Error(), "no data for") || strings.Contains(err.Error(), "the mirror trickles")) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a stalled download took %s to fail", d)
	}
}

// A mirror that trickles (a byte at a time, with a correct length, so no
// read ever waits long) is cut by the low-speed limit, retried, and the
// error says so and names the URL.
func TestFetchTrickleIsCut(t *testing.T) {
	m := newMirror(t, basePkgs)
	m.handler = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".deb") {
			return false
		}
		w.Header().Set("Content-Length", "100000")
		for i := 0; i < 100000; i++ {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(50 * time.Millisecond):
			}
		}
		return true
	}
	cache, _ := OpenCache(t.TempDir(), nil)
	var log bytes.Buffer
	cl := quickClient()
	cl.Stall, cl.MinSpeed, cl.Retries = 400*time.Millisecond, 100, 1
	a, err := Open(context.Background(), m.source(), cl, cache, testLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.Fetch(context.Background(), a.Index.Candidate("dash"))
	if err == nil || !strings.Contains(err.Error(), "the mirror trickles") || !strings.Contains(err.Error(), "/pool/main/d/dash_") {
		t.Fatalf("got %v", err)
	}
	// Two attempts of one or two windows each, and the back-off.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a trickling download took %s to fail", d)
	}
}

func TestParseRelease(t *testing.T) {
	r, err := ParseRelease([]byte("Suite: stable\nCodename: trixie\nDate: Sat, 21 Nov 2026 09:15:44 UTC\nValid-Until: Sat, 28 Nov 2026 09:15:44 UTC\nArchitectures: amd64 arm64\nComponents: main updates/contrib\nAcquire-By-Hash: yes\nSHA256:\n "+strings.Repeat("ab", 32)+" 12 main/binary-amd64/Packages\n"), "R")
	if err != nil {
		t.Fatal(err)
	}
	if !r.AcquireByHash || !r.HasComponent("contrib") || r.HasArch("i386") || r.Files["main/binary-amd64/Packages"].Size != 12 || r.ValidUntil.Day() != 28 {
		t.Errorf("%+v", r)
	}
	if _, err := ParseRelease([]byte("Suite: x\nMD5Sum:\n 00 1 a\n"), "R"); err == nil {
		t.Error("a Release without SHA256 accepted")
	}
}
