package installer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"

	"vmdeb/internal/archive"
)

var sha256Hex = archive.SHA256Hex

var (
	keyOnce sync.Once
	archKey *openpgp.Entity // the test archive's signing key
	strange *openpgp.Entity // a key the keyring does not hold
)

// keys makes two Ed25519 keys once (the kind of Debian's newer release
// keys), dated a day back so that signatures made now are after them.
func keys(t *testing.T) (*openpgp.Entity, *openpgp.Entity) {
	t.Helper()
	keyOnce.Do(func() {
		cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, DefaultHash: crypto.SHA256,
			Time: func() time.Time { return testTime.Add(-24 * time.Hour) }}
		var err error
		if archKey, err = openpgp.NewEntity("Test Archive", "", "archive@example.org", cfg); err != nil {
			panic(err)
		}
		if strange, err = openpgp.NewEntity("Someone Else", "", "else@example.org", cfg); err != nil {
			panic(err)
		}
	})
	return archKey, strange
}

// sigConfig dates signatures at testTime.
var sigConfig = &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return testTime }}

func clearSign(t *testing.T, e *openpgp.Entity, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, e.PrivateKey, sigConfig)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(text))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// releaseText is a Release whose SHA256 section lists files.
func releaseText(suite, codename string, validUntil string, files map[string][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Origin: Debian\nSuite: %s\nCodename: %s\nVersion: 13.1\nDate: Sat, 06 Sep 2025 10:00:00 UTC\n", suite, codename)
	if validUntil != "" {
		fmt.Fprintf(&b, "Valid-Until: %s\n", validUntil)
	}
	b.WriteString("MD5Sum:\n d41d8cd98f00b204e9800998ecf8427e 0 ignored\nSHA256:\n")
	for name, data := range files {
		fmt.Fprintf(&b, " %s %8d %s\n", sha256Hex(data), len(data), name)
	}
	return b.String()
}

var (
	kernel   = []byte("a kernel")
	initrd   = []byte("an initrd")
	gkernel  = []byte("a kernel") // the graphical installer shares the kernel
	ginitrd  = []byte("a bigger initrd with a GUI")
	testTime = time.Now().UTC().Truncate(time.Second)
)

func sumsFile(files map[string][]byte) []byte {
	var b strings.Builder
	for name, data := range files {
		fmt.Fprintf(&b, "%s  ./%s\n", sha256Hex(data), name)
	}
	return []byte(b.String())
}

func imageSet() map[string][]byte {
	return map[string][]byte{
		"cdrom/vmlinuz": kernel, "cdrom/initrd.gz": initrd,
		"cdrom/gtk/vmlinuz": gkernel, "cdrom/gtk/initrd.gz": ginitrd,
		"netboot/netboot.tar.gz": []byte("not fetched"),
	}
}

func gotSums(files map[string][]byte, names ...string) map[string]archive.FileInfo {
	m := map[string]archive.FileInfo{}
	for _, n := range names {
		m[n] = archive.FileInfo{SHA256: sha256Hex(files[n]), Size: int64(len(files[n]))}
	}
	return m
}

// keyringOf writes the public keys to a keyring file and loads it as
// Fetch does.
func keyringOf(t *testing.T, es ...*openpgp.Entity) (*archive.Keyring, string) {
	t.Helper()
	var b bytes.Buffer
	for _, e := range es {
		if err := e.Serialize(&b); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	kr, err := archive.LoadKeyring(p)
	if err != nil {
		t.Fatal(err)
	}
	return kr, p
}

func TestVerify(t *testing.T) {
	key, other := keys(t)
	kr, _ := keyringOf(t, key)
	imgs := imageSet()
	sums := sumsFile(imgs)
	inRelease := clearSign(t, key, releaseText("stable", "trixie", "", map[string][]byte{
		SumsPath("amd64", "current"): sums, "main/binary-amd64/Packages.gz": []byte("x"),
	}))
	got := gotSums(imgs, "cdrom/vmlinuz", "cdrom/initrd.gz", "cdrom/gtk/vmlinuz", "cdrom/gtk/initrd.gz")
	if err := Verify(inRelease, kr, testTime, "trixie", "amd64", "current", sums, got); err != nil {
		t.Fatalf("a good chain fails: %v", err)
	}
	if err := Verify(inRelease, kr, testTime, "stable", "amd64", "current", sums, got); err != nil {
		t.Errorf("the suite's alias is refused: %v", err)
	}

	bad := func(name string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, want)
		}
	}
	// The signature covers the text: change one hash and it fails.
	tampered := bytes.Replace(inRelease, []byte(sha256Hex(sums)), []byte(sha256Hex([]byte("evil"))), 1)
	bad("tampered InRelease", Verify(tampered, kr, testTime, "trixie", "amd64", "current", sums, got), "signature")
	bad("unknown signer", Verify(clearSign(t, other, releaseText("stable", "trixie", "", map[string][]byte{SumsPath("amd64", "current"): sums})),
		kr, testTime, "trixie", "amd64", "current", sums, got), "no valid signature")
	bad("not signed", Verify([]byte(releaseText("stable", "trixie", "", nil)), kr, testTime, "trixie", "amd64", "current", sums, got), "not signed")
	bad("another suite", Verify(inRelease, kr, testTime, "bookworm", "amd64", "current", sums, got), "that of trixie")
	bad("changed SHA256SUMS", Verify(inRelease, kr, testTime, "trixie", "amd64", "current", append([]byte{}, append(sums, '\n')...), got), "does not match the signed Release")
	bad("no installer for the arch", Verify(inRelease, kr, testTime, "trixie", "arm64", "current", sums, got), "no debian-installer for arm64")
	changed := gotSums(imgs, "cdrom/vmlinuz")
	changed["cdrom/initrd.gz"] = archive.FileInfo{SHA256: sha256Hex([]byte("other")), Size: 5}
	bad("changed initrd", Verify(inRelease, kr, testTime, "trixie", "amd64", "current", sums, changed), "cdrom/initrd.gz: SHA256")
	bad("unlisted file", Verify(inRelease, kr, testTime, "trixie", "amd64", "current", sums, map[string]archive.FileInfo{"cdrom/other": {SHA256: sha256Hex(kernel)}}), "not in SHA256SUMS")

	until := testTime.Add(24 * time.Hour)
	expired := clearSign(t, key, releaseText("stable-security", "trixie-security", until.Format(time.RFC1123), map[string][]byte{SumsPath("amd64", "current"): sums}))
	if _, _, err := archive.VerifyRelease(expired, kr, "InRelease", until.Add(-time.Hour)); err != nil {
		t.Errorf("a valid InRelease is refused: %v", err)
	}
	_, _, err := archive.VerifyRelease(expired, kr, "InRelease", until.Add(time.Hour))
	bad("expired", err, "expired")
}

func TestInstallerDirs(t *testing.T) {
	r := &archive.Release{Files: map[string]archive.FileInfo{
		SumsPath("amd64", "20250803"):                 {},
		SumsPath("amd64", "current"):                  {},
		SumsPath("amd64", "20250803+deb13u2"):         {},
		SumsPath("arm64", "current"):                  {},
		"main/installer-amd64/current/images/MD5SUMS": {},
		"main/binary-amd64/Packages":                  {},
	}}
	if got, want := InstallerDirs(r, "amd64"), []string{"current", "20250803+deb13u2", "20250803"}; !reflect.DeepEqual(got, want) {
		t.Errorf("InstallerDirs = %v, want %v", got, want)
	}
	if got := InstallerDirs(r, "riscv64"); len(got) != 0 {
		t.Errorf("InstallerDirs(riscv64) = %v", got)
	}
}

func TestParseSums(t *testing.T) {
	h := sha256Hex(kernel)
	m, err := ParseSums([]byte(h + "  ./cdrom/vmlinuz\n" + strings.ToUpper(h) + " *./MANIFEST\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m["cdrom/vmlinuz"] != h || m["MANIFEST"] != h {
		t.Errorf("ParseSums = %v", m)
	}
	for _, bad := range []string{"", "nothex  ./x\n", h + "\n", h + "  a b\n"} {
		if _, err := ParseSums([]byte(bad)); err == nil {
			t.Errorf("ParseSums(%q) accepted", bad)
		}
	}
}

func TestPickNetboot(t *testing.T) {
	h := sha256Hex(kernel)
	pk := fmt.Sprintf(`Package: debian-installer-12-netboot-amd64
Version: 20230607+deb12u1
Filename: pool/main/d/dinb/debian-installer-12-netboot-amd64_20230607+deb12u1_all.deb
Size: 10
SHA256: %[1]s

Package: debian-installer-13-netboot-amd64
Version: 20250803+deb13u1
Description: Debian-installer network boot images
 more text: with a colon
Filename: pool/main/d/dinb/debian-installer-13-netboot-amd64_20250803+deb13u1_all.deb
Size: 20
SHA256: %[1]s

Package: debian-installer-13-netboot-arm64
Version: 20250803+deb13u1
Filename: pool/x.deb
Size: 20
SHA256: %[1]s
`, h)
	p, err := PickNetboot([]byte(pk), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "debian-installer-13-netboot-amd64" || p.Release != 13 || p.Size != 20 || p.SHA256 != h || !strings.HasSuffix(p.Filename, "deb13u1_all.deb") {
		t.Errorf("PickNetboot = %+v", p)
	}
	if d := p.ImageDir("amd64"); d != "usr/lib/debian-installer/images/13/amd64" {
		t.Errorf("ImageDir = %s", d)
	}
	if _, err := PickNetboot([]byte(pk), "riscv64"); err == nil {
		t.Error("a missing package was found")
	}
	if _, err := PickNetboot([]byte("Package: debian-installer-13-netboot-amd64\nFilename: ../../etc/passwd\nSize: 1\nSHA256: "+h+"\n"), "amd64"); err == nil {
		t.Error("a Filename leaving the mirror was accepted")
	}
}

func TestDebianKeyring(t *testing.T) {
	if _, err := os.Stat(DefaultKeyring); err != nil {
		t.Skip("debian-archive-keyring not installed")
	}
	if _, err := archive.LoadKeyring(DefaultKeyring); err != nil {
		t.Fatal(err)
	}
	_, err := (&Fetcher{}).Fetch(context.Background(), "http://127.0.0.1:9/debian", "trixie", "amd64", t.TempDir(), filepath.Join(t.TempDir(), "missing.gpg"))
	if err == nil || !strings.Contains(err.Error(), "keyring") {
		t.Errorf("a missing keyring: %v", err)
	}
}

// mirror serves a fake archive on the loopback interface.
type mirror struct {
	files map[string][]byte
	hits  map[string]int
	mu    sync.Mutex
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.hits[r.URL.Path]++
	m.mu.Unlock()
	data, ok := m.files[strings.TrimPrefix(r.URL.Path, "/debian/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

// fakeArchive lays out dists/trixie with the given installer builds
// (dir -> files) and a signed InRelease listing whatever release lists.
func fakeArchive(t *testing.T, builds map[string]map[string][]byte, release map[string][]byte) (*mirror, string) {
	t.Helper()
	key, _ := keys(t)
	m := &mirror{files: map[string][]byte{}, hits: map[string]int{}}
	if release == nil {
		release = map[string][]byte{}
	}
	for dir, files := range builds {
		sums := sumsFile(files)
		m.files["dists/trixie/"+SumsPath("amd64", dir)] = sums
		if _, ok := release[SumsPath("amd64", dir)]; !ok {
			release[SumsPath("amd64", dir)] = sums
		}
		for name, data := range files {
			m.files["dists/trixie/main/installer-amd64/"+dir+"/images/"+name] = data
		}
	}
	m.files["dists/trixie/InRelease"] = clearSign(t, key, releaseText("stable", "trixie", "", release))
	_, kr := keyringOf(t, key)
	return m, kr
}

// fetcher has a client that gives up quickly: tests need not wait out
// real mirrors' backoff.
func fetcher() *Fetcher {
	cl := archive.NewClient()
	cl.Stall, cl.Backoff = 5*time.Second, 10*time.Millisecond
	return &Fetcher{Now: func() time.Time { return testTime }, Client: cl}
}

func TestFetch(t *testing.T) {
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": imageSet()}, nil)
	srv := httptest.NewServer(m)
	defer srv.Close()
	dest := t.TempDir()
	f, err := fetcher().Fetch(context.Background(), srv.URL+"/debian/", "trixie", "amd64", dest, kr)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Graphical || f.Netboot || f.Suite != "trixie" || f.Version != "13.1" || f.Source != "images/current" || !strings.Contains(f.Signer, "Test Archive") {
		t.Errorf("Files = %+v", f)
	}
	for local, want := range map[string][]byte{"vmlinuz": kernel, "initrd.gz": initrd, "gtk/vmlinuz": gkernel, "gtk/initrd.gz": ginitrd} {
		if got, err := os.ReadFile(filepath.Join(dest, local)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, %v", local, got, err)
		}
	}
	// A second run keeps the verified files.
	before := m.hits["/debian/dists/trixie/main/installer-amd64/current/images/cdrom/initrd.gz"]
	if _, err := fetcher().Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", dest, kr); err != nil {
		t.Fatal(err)
	}
	if after := m.hits["/debian/dists/trixie/main/installer-amd64/current/images/cdrom/initrd.gz"]; after != before {
		t.Errorf("a verified file was downloaded again")
	}
}

func TestFetchNoGraphical(t *testing.T) {
	imgs := imageSet()
	delete(imgs, "cdrom/gtk/vmlinuz")
	delete(imgs, "cdrom/gtk/initrd.gz")
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": imgs}, nil)
	srv := httptest.NewServer(m)
	defer srv.Close()
	dest := t.TempDir()
	f, err := fetcher().Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", dest, kr)
	if err != nil {
		t.Fatal(err)
	}
	if f.Graphical {
		t.Error("Graphical without the gtk files")
	}
	if _, err := os.Stat(filepath.Join(dest, "gtk")); err == nil {
		t.Error("an empty gtk directory was left")
	}
}

// TestFetchTampered: a file that does not match SHA256SUMS never appears
// under its name; a current build that does not match the Release gives
// way to an older build that does.
func TestFetchTampered(t *testing.T) {
	good := imageSet()
	evil := imageSet()
	evil["cdrom/initrd.gz"] = []byte("an initrd with a rootkit")
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": good}, nil)
	m.files["dists/trixie/main/installer-amd64/current/images/cdrom/initrd.gz"] = evil["cdrom/initrd.gz"]
	srv := httptest.NewServer(m)
	defer srv.Close()
	dest := t.TempDir()
	_, err := fetcher().Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", dest, kr)
	if err == nil || !strings.Contains(err.Error(), "cdrom/initrd.gz: SHA256") {
		t.Fatalf("a changed initrd: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "initrd.gz")); err == nil {
		t.Error("the unverified initrd is in place")
	}
	if ps, _ := filepath.Glob(filepath.Join(dest, "*.part")); len(ps) > 0 {
		t.Errorf("partial files left: %v", ps)
	}

	// The mirror's current is another build than the Release describes;
	// the dated build the Release does describe is used.
	m, kr = fakeArchive(t, map[string]map[string][]byte{"current": good, "20250803": good}, map[string][]byte{SumsPath("amd64", "current"): []byte("another build's sums")})
	srv2 := httptest.NewServer(m)
	defer srv2.Close()
	var logged []string
	fe := fetcher()
	fe.Log = func(format string, a ...any) { logged = append(logged, fmt.Sprintf(format, a...)) }
	f, err := fe.Fetch(context.Background(), srv2.URL+"/debian", "trixie", "amd64", t.TempDir(), kr)
	if err != nil {
		t.Fatal(err)
	}
	if f.Source != "images/20250803" {
		t.Errorf("Source = %s", f.Source)
	}
	if !strings.Contains(strings.Join(logged, "\n"), "using build 20250803") {
		t.Errorf("the fallback is not logged: %q", logged)
	}
}

// TestFetchNetboot: without usable images the netboot package is used,
// checked against Packages.gz and the Release.
func TestFetchNetboot(t *testing.T) {
	base := "./usr/lib/debian-installer/images/13/amd64/"
	deb := netbootDeb(t, map[string][]byte{
		base + "text/debian-installer/amd64/linux": kernel, base + "text/debian-installer/amd64/initrd.gz": initrd,
		base + "gtk/debian-installer/amd64/linux": gkernel, base + "gtk/debian-installer/amd64/initrd.gz": ginitrd,
		base + "text/debian-installer/amd64/pxelinux.0": []byte("not wanted"),
	})
	pkgs := fmt.Sprintf("Package: debian-installer-13-netboot-amd64\nVersion: 20250803\nFilename: pool/main/d/dinb/nb.deb\nSize: %d\nSHA256: %s\n", len(deb), sha256Hex(deb))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(pkgs))
	zw.Close()

	// The Release lists an installer build whose files the mirror lacks.
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": imageSet()}, map[string][]byte{"main/binary-amd64/Packages.gz": gz.Bytes()})
	for p := range m.files {
		if strings.Contains(p, "/images/cdrom/") {
			delete(m.files, p)
		}
	}
	m.files["dists/trixie/main/binary-amd64/Packages.gz"] = gz.Bytes()
	m.files["pool/main/d/dinb/nb.deb"] = deb
	srv := httptest.NewServer(m)
	defer srv.Close()
	dest := t.TempDir()
	f, err := fetcher().Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", dest, kr)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Netboot || !f.Graphical || f.Source != "debian-installer-13-netboot-amd64 20250803" {
		t.Errorf("Files = %+v", f)
	}
	for local, want := range map[string][]byte{"vmlinuz": kernel, "initrd.gz": initrd, "gtk/vmlinuz": gkernel, "gtk/initrd.gz": ginitrd} {
		if got, err := os.ReadFile(filepath.Join(dest, local)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q, %v", local, got, err)
		}
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 3 {
		t.Errorf("dest holds %v; want vmlinuz, initrd.gz, gtk only", ents)
	}

	// A package that does not match Packages is refused.
	m.files["pool/main/d/dinb/nb.deb"] = append(deb, 0)
	if _, err := fetcher().Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", t.TempDir(), kr); err == nil || !strings.Contains(err.Error(), "does not match Packages") {
		t.Errorf("a changed netboot package: %v", err)
	}
}

func TestFetchStall(t *testing.T) {
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": imageSet()}, nil)
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/cdrom/vmlinuz") {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("a few bytes"))
			w.(http.Flusher).Flush()
			<-block // then nothing
			return
		}
		m.ServeHTTP(w, r)
	}))
	// Close waits for the handlers: unblock the stalled one first.
	defer srv.Close()
	defer close(block)
	fe := fetcher()
	fe.Client.Stall = 300 * time.Millisecond
	start := time.Now()
	_, err := fe.Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", t.TempDir(), kr)
	// The first window has a few bytes, the next none: either cuts it.
	if err == nil || !(strings.Contains(err.Error(), "no data for") || strings.Contains(err.Error(), "the mirror trickles")) {
		t.Errorf("a stalled download: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the stall was noticed only after %s", time.Since(start))
	}
}

// A mirror that trickles (a byte every 50 ms with a correct length) is
// cut by the low-speed limit, naming the URL.
func TestFetchTrickle(t *testing.T) {
	m, kr := fakeArchive(t, map[string]map[string][]byte{"current": imageSet()}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/cdrom/vmlinuz") {
			w.Header().Set("Content-Length", "100000")
			for i := 0; i < 100000; i++ {
				if _, err := w.Write([]byte{'k'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			return
		}
		m.ServeHTTP(w, r)
	}))
	defer srv.Close()
	fe := fetcher()
	fe.Client.Stall, fe.Client.MinSpeed = 400*time.Millisecond, 100
	start := time.Now()
	_, err := fe.Fetch(context.Background(), srv.URL+"/debian", "trixie", "amd64", t.TempDir(), kr)
	if err == nil || !strings.Contains(err.Error(), "the mirror trickles") || !strings.Contains(err.Error(), "/cdrom/vmlinuz") {
		t.Errorf("a trickling download: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the trickle was noticed only after %s", time.Since(start))
	}
}

// TestSeveralSignatures: the archive signs InRelease with several keys;
// one good signature by a key of the keyring is enough, wherever it
// stands, as long as none is bad.
func TestSeveralSignatures(t *testing.T) {
	key, other := keys(t)
	text := releaseText("stable", "trixie", "", map[string][]byte{SumsPath("amd64", "current"): []byte("x")})
	var b bytes.Buffer
	w, err := clearsign.EncodeMulti(&b, []*packet.PrivateKey{other.PrivateKey, key.PrivateKey}, sigConfig)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(text))
	w.Close()
	kr, _ := keyringOf(t, key)
	_, signer, err := archive.VerifyRelease(b.Bytes(), kr, "InRelease", testTime)
	if err != nil {
		t.Fatalf("a good signature after another key's: %v", err)
	}
	if !strings.Contains(signer, "Test Archive") {
		t.Errorf("Signer = %q", signer)
	}
	onlyOther, _ := keyringOf(t, other)
	if _, _, err := archive.VerifyRelease(clearSign(t, key, text), onlyOther, "InRelease", testTime); err == nil {
		t.Error("a signature by a key outside the keyring was accepted")
	}
	// Text added after the signature is not covered by it.
	if _, _, err := archive.VerifyRelease(append(b.Bytes(), []byte("\nSHA256:\n "+sha256Hex(nil)+" 0 evil\n")...), kr, "InRelease", testTime); err == nil {
		t.Error("unsigned text after the signature was accepted")
	}
	// A signature by the right key over other text is bad, and fails the
	// file even beside a good one.
	block, _ := clearsign.Decode(b.Bytes())
	good, _ := io.ReadAll(block.ArmoredSignature.Body)
	var forged bytes.Buffer
	openpgp.DetachSignText(&forged, key, strings.NewReader("other text"), sigConfig)
	var armored bytes.Buffer
	aw, _ := armor.Encode(&armored, "PGP SIGNATURE", nil)
	aw.Write(good)
	aw.Write(forged.Bytes())
	aw.Close()
	i := bytes.Index(b.Bytes(), []byte("-----BEGIN PGP SIGNATURE-----"))
	withForged := append(append([]byte{}, b.Bytes()[:i]...), append(armored.Bytes(), '\n')...)
	if _, _, err := archive.VerifyRelease(withForged, kr, "InRelease", testTime); err == nil || !strings.Contains(err.Error(), "BAD signature") {
		t.Errorf("a bad signature beside a good one: %v", err)
	}
}

// netbootDeb makes a .deb as the archive's netboot packages are made:
// debian-binary, control.tar.xz, data.tar.xz.
func netbootDeb(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	txz := func(files map[string][]byte) []byte {
		var b bytes.Buffer
		xw, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(xw)
		names := slices.Sorted(maps.Keys(files))
		for _, n := range names {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: testTime})
			tw.Write(files[n])
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := xw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	control := "Package: debian-installer-13-netboot-amd64\nVersion: 20250803\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: test\n"
	var out bytes.Buffer
	out.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.xz", txz(map[string][]byte{"./control": []byte(control)})}, {"data.tar.xz", txz(files)}} {
		fmt.Fprintf(&out, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		out.Write(m.data)
		if len(m.data)%2 == 1 {
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
