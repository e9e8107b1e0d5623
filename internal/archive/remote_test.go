package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// fakeRemote serves one package file (possibly altered) and records what
// it is told to store.
type fakeRemote struct {
	data   []byte // nil: a miss
	mu     sync.Mutex
	asked  int
	stored []string
}

func (f *fakeRemote) FetchDeb(ctx context.Context, name string, want FileInfo, w io.Writer) error {
	f.mu.Lock()
	f.asked++
	f.mu.Unlock()
	if f.data == nil {
		return errors.New("not in the remote cache")
	}
	_, err := w.Write(f.data)
	return err
}

func (f *fakeRemote) StoreDeb(name string, want FileInfo, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored = append(f.stored, fmt.Sprintf("%s %s %d %s", name, want.SHA256, want.Size, path))
}

func TestCacheRemote(t *testing.T) {
	data := bytes.Repeat([]byte("package "), 1000)
	want := FileInfo{Size: int64(len(data)), SHA256: sha(data)}
	get := func(r *fakeRemote) (*Cache, string, int64, []string) {
		t.Helper()
		srv, hits := blobServer(t, data, plainServe)
		var notes []string
		c, err := OpenCache(t.TempDir(), func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) })
		if err != nil {
			t.Fatal(err)
		}
		c.Remote = r
		p, err := c.Get(context.Background(), quickClient(), srv.URL+"/x.deb", "x_1_all.deb", want)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatal("wrong content")
		}
		return c, p, hits.Load(), notes
	}

	// In the remote cache: the mirror is not asked, nothing is pushed back.
	r := &fakeRemote{data: data}
	if _, _, hits, _ := get(r); hits != 0 || r.asked != 1 || len(r.stored) != 0 {
		t.Errorf("remote hit: %d downloads, asked %d, stored %v", hits, r.asked, r.stored)
	}
	// A miss: downloaded, then handed to the remote cache.
	r = &fakeRemote{}
	if _, p, hits, _ := get(r); hits != 1 || len(r.stored) != 1 || r.stored[0] != "x_1_all.deb "+want.SHA256+" 8000 "+p {
		t.Errorf("remote miss: %d downloads, stored %v", hits, r.stored)
	}
	// Altered in the remote cache: refused (said so), downloaded instead,
	// and the good copy is what the cache keeps.
	bad := append([]byte{}, data...)
	bad[10] ^= 0xff
	r = &fakeRemote{data: bad}
	_, _, hits, notes := get(r)
	if hits != 1 || len(notes) != 1 || !strings.Contains(notes[0], "the remote cache's copy was refused") {
		t.Errorf("corrupt remote copy: %d downloads, notes %q", hits, notes)
	}
	// Only .deb files go to the remote cache (not indices).
	r = &fakeRemote{data: data}
	c, _ := OpenCache(t.TempDir(), nil)
	c.Remote = r
	srv, _ := blobServer(t, data, plainServe)
	if _, err := c.Get(context.Background(), quickClient(), srv.URL+"/Packages", "Packages", want); err != nil {
		t.Fatal(err)
	}
	if r.asked != 0 || len(r.stored) != 0 {
		t.Errorf("an index went through the remote cache: asked %d, stored %v", r.asked, r.stored)
	}
}
