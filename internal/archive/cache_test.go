package archive

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// blob is a file served by a test server, slowly or cut short on demand.
func blobServer(t *testing.T, data []byte, serve func(w http.ResponseWriter, r *http.Request, data []byte)) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		serve(w, r, data)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func plainServe(w http.ResponseWriter, r *http.Request, data []byte) { w.Write(data) }

func TestCacheGetVerifiesAndReuses(t *testing.T) {
	data := bytes.Repeat([]byte("package "), 10000)
	srv, hits := blobServer(t, data, plainServe)
	c, err := OpenCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := FileInfo{Size: int64(len(data)), SHA256: sha(data)}
	for i := 0; i < 2; i++ {
		p, err := c.Get(context.Background(), quickClient(), srv.URL+"/x.deb", "x_1_all.deb", want)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatal("wrong content")
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads, want 1", hits.Load())
	}
	if fi, err := os.Stat(filepath.Join(c.Dir, "by-name", "x_1_all.deb")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("name index: %v %v", fi, err)
	}
}

func TestCacheCorruptCopyReplaced(t *testing.T) {
	data := []byte("the real package")
	srv, hits := blobServer(t, data, plainServe)
	var notes []string
	c, _ := OpenCache(t.TempDir(), func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) })
	want := FileInfo{Size: int64(len(data)), SHA256: sha(data)}
	// A truncated file under the final name (a disk that lost data).
	os.MkdirAll(filepath.Dir(c.Path(want.SHA256)), 0o755)
	os.WriteFile(c.Path(want.SHA256), data[:5], 0o444)
	p, err := c.Get(context.Background(), quickClient(), srv.URL+"/x.deb", "x.deb", want)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) || hits.Load() != 1 {
		t.Fatalf("corrupt copy not replaced (%q, %d downloads)", got, hits.Load())
	}
	if len(notes) == 0 || !strings.Contains(notes[0], "corrupt") {
		t.Errorf("not reported: %q", notes)
	}
}

func TestCacheConcurrentGetsDownloadOnce(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 1<<20)
	srv, hits := blobServer(t, data, func(w http.ResponseWriter, r *http.Request, d []byte) {
		time.Sleep(200 * time.Millisecond)
		w.Write(d)
	})
	dir := t.TempDir()
	want := FileInfo{Size: int64(len(data)), SHA256: sha(data)}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Cache values: as two builds would have.
			c, err := OpenCache(dir, nil)
			if err == nil {
				_, err = c.Get(context.Background(), quickClient(), srv.URL+"/x.deb", "x.deb", want)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads of one file by four builds, want 1", hits.Load())
	}
}

// TestCacheSurvivesKilledDownload kills a process in the middle of a
// download (SIGKILL: no cleanup runs) and checks that the next one detects
// the partial file and replaces it.
func TestCacheSurvivesKilledDownload(t *testing.T) {
	if os.Getenv("VMDEB_TEST_CHILD_CACHE") != "" {
		childDownload()
		return
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var cut atomic.Bool
	cut.Store(true)
	srv, _ := blobServer(t, data, func(w http.ResponseWriter, r *http.Request, d []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(d)))
		if cut.Load() {
			// Half the file, then nothing: the child is killed meanwhile.
			w.Write(d[:len(d)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		w.Write(d)
	})
	dir := t.TempDir()
	want := FileInfo{Size: int64(len(data)), SHA256: sha(data)}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCacheSurvivesKilledDownload$")
	cmd.Env = append(os.Environ(), "VMDEB_TEST_CHILD_CACHE="+dir, "VMDEB_TEST_URL="+srv.URL+"/x.deb",
		"VMDEB_TEST_SHA="+want.SHA256, "VMDEB_TEST_SIZE="+strconv.FormatInt(want.Size, 10))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(dir, "tmp", want.SHA256+".partial")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(partial); err == nil && fi.Size() >= int64(len(data)/2) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child never wrote half the file")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("no partial file left by the killed download: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sha256", want.SHA256[:2], want.SHA256)); err == nil {
		t.Fatal("a partial download reached its final name")
	}
	cut.Store(false)
	var notes []string
	c, err := OpenCache(dir, func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) == 0 || !strings.Contains(notes[0], "partial download") {
		t.Errorf("the partial file was not detected: %q", notes)
	}
	p, err := c.Get(context.Background(), quickClient(), srv.URL+"/x.deb", "x.deb", want)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("the replaced file is wrong")
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("the partial file is still there")
	}
}

func childDownload() {
	c, err := OpenCache(os.Getenv("VMDEB_TEST_CHILD_CACHE"), nil)
	if err != nil {
		os.Exit(3)
	}
	size, _ := strconv.ParseInt(os.Getenv("VMDEB_TEST_SIZE"), 10, 64)
	c.Get(context.Background(), NewClient(), os.Getenv("VMDEB_TEST_URL"), "x.deb", FileInfo{Size: size, SHA256: os.Getenv("VMDEB_TEST_SHA")})
	os.Exit(4) // never reached in the test: the parent kills us first
}

func TestStagingIngestKeepsAptDownloads(t *testing.T) {
	c, _ := OpenCache(t.TempDir(), nil)
	data := []byte("a cached package")
	srv, _ := blobServer(t, data, plainServe)
	p, err := c.Get(context.Background(), quickClient(), srv.URL+"/a.deb", "a_1_all.deb", FileInfo{Size: int64(len(data)), SHA256: sha(data)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Link(p, "a_1_all.deb"); err != nil {
		t.Fatal(err)
	}
	// What apt would do inside: download one, then `apt-get clean`.
	fresh := []byte("downloaded by apt")
	os.WriteFile(filepath.Join(st.Dir, "b_2_amd64.deb"), fresh, 0o644)
	n, err := st.Ingest()
	if err != nil || n != 1 {
		t.Fatalf("ingested %d: %v", n, err)
	}
	os.Remove(filepath.Join(st.Dir, "a_1_all.deb"))
	if err := st.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{data, fresh} {
		if got, err := os.ReadFile(c.Path(sha(b))); err != nil || !bytes.Equal(got, b) {
			t.Errorf("cache lost %q: %v", b, err)
		}
	}
}

func TestDerivedCopyCheckedBeforeUse(t *testing.T) {
	c, _ := OpenCache(t.TempDir(), nil)
	orig := strings.Repeat("ab", 32)
	p, built, err := c.MakeDerived(context.Background(), orig, func(f *os.File) error { _, err := f.WriteString("derived"); return err })
	if err != nil || !built {
		t.Fatal(err)
	}
	if c.Derived(orig) != p {
		t.Fatal("derived copy not found")
	}
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("tampered"), 0o644)
	if got := c.Derived(orig); got != "" {
		t.Fatalf("a tampered derived copy was returned: %s", got)
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the tampered copy was not removed")
	}
}
