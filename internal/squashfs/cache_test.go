package squashfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The key covers the compressor's identity as well as the bytes.
func TestCacheKey(t *testing.T) {
	a, b := &Cache{Ident: "xz one"}, &Cache{Ident: "xz two"}
	block := []byte("some block")
	if a.Key(block) == b.Key(block) {
		t.Error("two compressors share a key")
	}
	if a.Key(block) != a.Key([]byte("some block")) || a.Key(block) == a.Key([]byte("some blocK")) {
		t.Error("the key does not follow the bytes")
	}
	// The identity and the bytes are kept apart: moving a byte from one
	// to the other is another key.
	if (&Cache{Ident: "ab"}).Key([]byte("c")) == (&Cache{Ident: "a"}).Key([]byte("bc")) {
		t.Error("identity and bytes run together")
	}
}

// An entry reads back as written; one cut short, changed or not an entry
// at all is refused as damaged and removed; a writer killed before its
// rename leaves only a temporary file, never read, swept once old.
func TestCacheEntries(t *testing.T) {
	c := &Cache{Dir: t.TempDir(), Ident: "test"}
	k := c.Key([]byte("raw"))
	if _, err := c.Get(k); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty cache: %v", err)
	}
	want := Stored{Data: []byte("compressed"), Uncompressed: false}
	if err := c.Put(k, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(k)
	if err != nil || string(got.Data) != "compressed" || got.Uncompressed {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	raw := Stored{Data: []byte("raw"), Uncompressed: true}
	k2 := c.Key([]byte("raw2"))
	c.Put(k2, raw)
	if got, err := c.Get(k2); err != nil || !got.Uncompressed {
		t.Fatalf("an uncompressed block: %+v, %v", got, err)
	}

	whole, _ := os.ReadFile(c.path(k))
	for name, damage := range map[string][]byte{
		"cut short":    whole[:len(whole)-3],
		"changed":      append(append([]byte(nil), whole[:len(whole)-1]...), whole[len(whole)-1]^1),
		"not an entry": []byte("hello"),
		"empty":        {},
	} {
		os.WriteFile(c.path(k), damage, 0o644)
		if _, err := c.Get(k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := os.Stat(c.path(k)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the damaged entry is still there", name)
		}
	}

	// A killed writer's temporary file.
	tmp := filepath.Join(filepath.Dir(c.path(k)), ".tmp-0123")
	os.WriteFile(tmp, whole[:10], 0o644)
	if _, err := c.Get(k); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a half-written entry was read: %v", err)
	}
	c.Sweep()
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("a young temporary file was swept (its writer may be alive): %v", err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(tmp, old, old)
	c.Sweep()
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an old temporary file was not swept: %v", err)
	}
}

// Prune removes what was not used for long, then the least recently used
// beyond the size limit.
func TestCachePrune(t *testing.T) {
	c := &Cache{Dir: t.TempDir(), Ident: "test"}
	var keys []string
	for i, age := range []time.Duration{0, time.Hour, 48 * time.Hour, 72 * time.Hour} {
		k := c.Key([]byte{byte(i)})
		keys = append(keys, k)
		c.Put(k, Stored{Data: make([]byte, 1000)})
		at := time.Now().Add(-age)
		os.Chtimes(c.path(k), at, at)
	}
	n, _, err := c.Prune(47*time.Hour, 0)
	if err != nil || n != 2 {
		t.Fatalf("by age: %d removed, %v", n, err)
	}
	if n, size, _ := c.Usage(); n != 2 || size < 2000 {
		t.Fatalf("left: %d entries, %d bytes", n, size)
	}
	entrySize := int64(len(entryMagic) + 1 + 32 + 1000)
	if n, _, _ := c.Prune(0, entrySize); n != 1 {
		t.Fatalf("by size: %d removed", n)
	}
	if _, err := c.Get(keys[0]); err != nil {
		t.Errorf("the most recently used entry went: %v", err)
	}
	if n, _, _ := c.Prune(0, 1); n != 1 {
		t.Errorf("everything: %d removed", n)
	}
}
