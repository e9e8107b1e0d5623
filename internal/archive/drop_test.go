package archive

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// A mirror that drops the connection half way through every .deb: bounded
// retries, an error naming the URL, nothing partial in the cache; once the
// mirror is back, the same fetch succeeds with a verified file.
func TestDroppedConnectionsThenBack(t *testing.T) {
	m := newMirror(t, basePkgs)
	var dropping atomic.Bool
	var drops atomic.Int32
	dropping.Store(true)
	m.handler = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".deb") || !dropping.Load() {
			return false
		}
		drops.Add(1)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return true
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n!<arch>\ndebian-binary   ")
		buf.Flush()
		conn.Close()
		return true
	}
	cache, err := OpenCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := quickClient()
	cl.Retries = 2
	var log bytes.Buffer
	a, err := Open(context.Background(), m.source(), cl, cache, testLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	p := a.Index.Candidate("dash")
	_, err = a.Fetch(context.Background(), p)
	if err == nil {
		t.Fatal("a download whose connection always drops succeeded")
	}
	if !strings.Contains(err.Error(), p.Filename) {
		t.Errorf("the error does not name the URL: %v", err)
	}
	if n := drops.Load(); n != 3 {
		t.Errorf("%d attempts, want 3 (one and two retries)", n)
	}
	if _, err := os.Stat(cache.Path(p.SHA256)); err == nil {
		t.Error("a partial download is in the cache under its hash")
	}

	dropping.Store(false)
	path, err := a.Fetch(context.Background(), p)
	if err != nil {
		t.Fatalf("the mirror is back, yet: %v", err)
	}
	if sum, _, err := HashFile(path); err != nil || sum != p.SHA256 {
		t.Errorf("fetched file %s: sha256 %s, want %s (%v)", path, sum, p.SHA256, err)
	}
}
