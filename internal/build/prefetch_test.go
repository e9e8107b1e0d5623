package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"vmdeb/internal/archive"
	"vmdeb/internal/imgroot"
)

func TestParsePrintURIs(t *testing.T) {
	out := "Reading package lists...\n" +
		"'http://m.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb' hello_2.10-3_amd64.deb 53076 MD5Sum:205bff7f0368ca10574c658af3cbb572\n" +
		"'https://m.example/debian/pool/main/a/apt/libapt_1%3a3.0.3_all.deb' libapt_1%3a3.0.3_all.deb 1000 SHA256:" + strings.Repeat("ab", 32) + "\n" +
		"'file:/srv/debian/pool/main/x/x/x_1_all.deb' x_1_all.deb 10 MD5Sum:00\n"
	items, err := parsePrintURIs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Name != "hello_2.10-3_amd64.deb" || items[0].Want.Size != 53076 || items[0].Want.SHA256 != "" ||
		items[1].URL != "https://m.example/debian/pool/main/a/apt/libapt_1%3a3.0.3_all.deb" {
		t.Errorf("got %+v", items)
	}
	if got, want := showArgs(items), []string{"show", "hello:amd64=2.10-3", "libapt=1:3.0.3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("apt-cache arguments %q, want %q", got, want)
	}
	for _, bad := range []string{
		"'http://m/a.deb' ../a_1_all.deb 10 MD5Sum:00",
		"'http://m/a.deb' a/b_1_all.deb 10 MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb -1 MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb x MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb 10",
		"'http://m/a.deb' a_1_all.tar 10 MD5Sum:00",
		"'http://m/a.deb' a.deb 10 MD5Sum:00",
	} {
		if _, err := parsePrintURIs([]byte(bad + "\n")); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// Each package gets the SHA256 of the index record with its file name and
// size; one without such a record is left to apt.
func TestShaFor(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	records := "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: 53076\nSHA256: " + a + "\n\n" +
		"Package: libapt\nVersion: 1:3.0.3\nArchitecture: all\nFilename: pool/main/a/apt/libapt_3.0.3_all.deb\nSize: 1000\nSHA256: " + b + "\n\n" +
		"Package: other\nVersion: 1\nArchitecture: all\nFilename: pool/main/o/other/other_1_all.deb\nSize: 5\nSHA256: " + b + "\n"
	items := []prefetchItem{
		{Name: "hello_2.10-3_amd64.deb"}, {Name: "libapt_1%3a3.0.3_all.deb"}, {Name: "other_1_all.deb"}, {Name: "missing_1_all.deb"},
	}
	items[0].Want.Size, items[1].Want.Size, items[2].Want.Size, items[3].Want.Size = 53076, 1000, 6, 1
	got, err := shaFor(items, []byte(records))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Want.SHA256 != a || got[1].Want.SHA256 != b || got[1].Name != "libapt_1%3a3.0.3_all.deb" {
		t.Errorf("got %+v", got)
	}
}

// imageWithArchives is an image root holding apt's cache directory (and
// partial/) under dir.
func imageWithArchives(t *testing.T, dir string) (*imgroot.Root, string) {
	t.Helper()
	img := filepath.Join(dir, "img")
	if err := os.MkdirAll(filepath.Join(img, aptArchives, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := imgroot.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, img
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A package goes through the package cache: fetched once, then found
// there by the next image; each image gets a hard link to the cached
// file (a link planted at the name is replaced, its target untouched),
// or a copy when the image is on another file system.
func TestFetchCached(t *testing.T) {
	deb := []byte("!<arch>\na package\n")
	sum := sha256.Sum256(deb)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(deb)
	}))
	defer srv.Close()
	cache, err := archive.OpenCache(t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	it := prefetchItem{URL: srv.URL + "/pool/main/h/hello/hello_1_all.deb", Name: "hello_1_all.deb",
		Want: archive.FileInfo{Size: int64(len(deb)), SHA256: hex.EncodeToString(sum[:])}}
	ctx, cl := context.Background(), archive.NewClient()

	host := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(host, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		r, img := imageWithArchives(t, filepath.Dir(cache.Dir))
		if i == 1 {
			os.Symlink(host, filepath.Join(img, aptArchives, it.Name))
		}
		linked, err := fetchCached(ctx, cl, cache, r, it)
		if err != nil || !linked {
			t.Fatalf("image %d: linked %v, %v", i, linked, err)
		}
		got := filepath.Join(img, aptArchives, it.Name)
		if fi, err := os.Lstat(got); err != nil || !fi.Mode().IsRegular() || inode(t, got) != inode(t, cache.Path(it.Want.SHA256)) {
			t.Errorf("image %d: %s is not a link to the cached file (%v, %v)", i, got, fi, err)
		}
		os.RemoveAll(img)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the mirror was asked %d times, want once", n)
	}
	if data, _ := os.ReadFile(host); string(data) != "host\n" {
		t.Errorf("the planted link's target was written: %q", data)
	}

	// Another file system: a copy, the cached file untouched.
	shm, err := os.MkdirTemp("/dev/shm", "vmdeb-test-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	defer os.RemoveAll(shm)
	var a, b syscall.Statfs_t
	if syscall.Statfs(shm, &a) != nil || syscall.Statfs(cache.Dir, &b) != nil || a.Fsid == b.Fsid {
		t.Skip("/dev/shm is on the package cache's file system")
	}
	r, img := imageWithArchives(t, shm)
	linked, err := fetchCached(ctx, cl, cache, r, it)
	if err != nil || linked {
		t.Fatalf("across file systems: linked %v, %v; want a copy", linked, err)
	}
	if data, _ := os.ReadFile(filepath.Join(img, aptArchives, it.Name)); string(data) != string(deb) {
		t.Errorf("the copy holds %q", data)
	}
	if left, _ := filepath.Glob(filepath.Join(img, aptArchives, "partial", "*")); len(left) > 0 {
		t.Errorf("left in partial/: %v", left)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the mirror was asked %d times, want once", n)
	}
}
