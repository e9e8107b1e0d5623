package archive

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var payload = bytes.Repeat([]byte("a kernel image "), 4096)

// noPartial fails when dst or its partial file exists.
func noPartial(t *testing.T, dst string) {
	t.Helper()
	for _, p := range []string{dst, dst + ".part"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// A transfer cut half way (the server closes the connection) is retried
// from the start: the file holds the payload once, not a prefix of it
// followed by the payload.
func TestDownloadRetriesCutTransfer(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		if hits.Add(1) == 1 {
			w.Write(payload[:len(payload)/2])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.Write(payload)
	}))
	defer srv.Close()
	dst := filepath.Join(t.TempDir(), "vmlinuz")
	if err := quickClient().Download(context.Background(), srv.URL+"/vmlinuz", dst, "vmlinuz", FileInfo{SHA256: SHA256Hex(payload), Size: int64(len(payload))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, payload) {
		t.Errorf("the file holds %d bytes, want the %d of the payload", len(got), len(payload))
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	if _, err := os.Stat(dst + ".part"); err == nil {
		t.Error("the partial file was left")
	}
}

// A 5xx is retried until the retries are spent; a 404 is not retried.
func TestDownloadRetriesServerErrorsOnly(t *testing.T) {
	var hits atomic.Int32
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", status)
	}))
	defer srv.Close()
	cl := quickClient()
	cl.Retries = 2
	dst := filepath.Join(t.TempDir(), "f")
	want := FileInfo{SHA256: SHA256Hex(payload), Size: -1}
	err := cl.Download(context.Background(), srv.URL+"/f", dst, "f", want)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != status {
		t.Fatalf("got %v, want a 503", err)
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("%d requests for a 503 with 2 retries, want 3", n)
	}
	noPartial(t, dst)

	hits.Store(0)
	status = http.StatusNotFound
	if err := cl.Download(context.Background(), srv.URL+"/f", dst, "f", want); !NotFound(err) {
		t.Fatalf("got %v, want not found", err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d requests for a 404, want 1", n)
	}
}

// A mirror that stops sending is cut after the stall window, on every
// attempt, and nothing is left under either name.
func TestDownloadStall(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		w.Write(payload[:10])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	cl := quickClient()
	cl.Stall, cl.Retries = 200*time.Millisecond, 1
	dst := filepath.Join(t.TempDir(), "f")
	start := time.Now()
	err := cl.Download(context.Background(), srv.URL+"/f", dst, "f", FileInfo{SHA256: SHA256Hex(payload), Size: int64(len(payload))})
	var st *StallError
	if !errors.As(err, &st) || !strings.Contains(err.Error(), srv.URL+"/f") {
		t.Fatalf("got %v, want a stall naming the URL", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stall took %s to be noticed", d)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (one retry)", n)
	}
	noPartial(t, dst)
}

// A file whose hash or size is not the index's is refused with a
// HashError, not retried, and never appears under its name; a file that
// was already there is left alone.
func TestDownloadHashMismatch(t *testing.T) {
	var hits atomic.Int32
	evil := append(bytes.Clone(payload[:len(payload)-1]), '!')
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(evil)
	}))
	defer srv.Close()
	for _, want := range []FileInfo{
		{SHA256: SHA256Hex(payload), Size: int64(len(payload))}, // same size, other bytes
		{SHA256: SHA256Hex(payload), Size: -1},                  // no size known
		{SHA256: SHA256Hex(evil), Size: int64(len(evil)) - 1},   // right bytes, wrong size
	} {
		hits.Store(0)
		dst := filepath.Join(t.TempDir(), "initrd.gz")
		err := quickClient().Download(context.Background(), srv.URL+"/initrd.gz", dst, "cdrom/initrd.gz", want)
		var he *HashError
		if !errors.As(err, &he) || he.File != "cdrom/initrd.gz" || !he.Downloaded {
			t.Fatalf("%+v: got %v, want a HashError", want, err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("%+v: %d requests, want 1", want, n)
		}
		noPartial(t, dst)
	}

	dst := filepath.Join(t.TempDir(), "kept")
	os.WriteFile(dst, []byte("verified earlier"), 0o644)
	if err := quickClient().Download(context.Background(), srv.URL+"/x", dst, "x", FileInfo{SHA256: SHA256Hex(payload), Size: -1}); err == nil {
		t.Fatal("a mismatch was accepted")
	}
	if got, _ := os.ReadFile(dst); string(got) != "verified earlier" {
		t.Errorf("a refused download replaced the file: %q", got)
	}
	if err := quickClient().Download(context.Background(), srv.URL+"/x", dst, "x", FileInfo{Size: -1}); err == nil {
		t.Error("a download with no SHA256 to check was accepted")
	}
}

// Download reads file:// mirrors too, with the same check.
func TestDownloadFileURL(t *testing.T) {
	src := filepath.Join(t.TempDir(), "pool.deb")
	os.WriteFile(src, payload, 0o644)
	dst := filepath.Join(t.TempDir(), "copy.deb")
	if err := NewClient().Download(context.Background(), "file://"+src, dst, "pool.deb", FileInfo{SHA256: SHA256Hex(payload), Size: int64(len(payload))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, payload) {
		t.Error("wrong content")
	}
	err := NewClient().Download(context.Background(), "file://"+src+".missing", dst+"2", "x", FileInfo{SHA256: SHA256Hex(payload), Size: -1})
	if !NotFound(err) {
		t.Errorf("a missing file: %v", err)
	}
}
