package remotecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"vmdeb/internal/stagecache"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in    string
		host  string
		repo  string
		plain bool
	}{
		{"oci://127.0.0.1:5000/vmdeb/cache", "127.0.0.1:5000", "vmdeb/cache", true},
		{"oci://localhost/cache", "localhost", "cache", true},
		{"oci://[::1]:5000/a/b-c", "[::1]:5000", "a/b-c", true},
		{"oci://registry.example.org/team/vmdeb/", "registry.example.org", "team/vmdeb", false},
		{"oci://registry.example.org:8443/x.y_z", "registry.example.org:8443", "x.y_z", false},
	} {
		r, err := Parse(c.in, false)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if r.Host != c.host || r.Repo != c.repo || r.PlainHTTP != c.plain {
			t.Errorf("Parse(%q) = %+v, want host %s repo %s plain %v", c.in, *r, c.host, c.repo, c.plain)
		}
	}
	for _, off := range []string{"", "off"} {
		if r, err := Parse(off, false); r != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want no remote cache", off, r, err)
		}
	}
	if r, _ := Parse("oci://registry.example.org/a", true); !r.PlainHTTP {
		t.Error("insecure: plain HTTP not allowed for a remote host")
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:5000/a":        "the scheme must be oci://, not http://",
		"127.0.0.1:5000/a":               "the scheme oci:// is missing",
		"oci://":                         "the registry host is missing",
		"oci:///repo":                    "the registry host is missing",
		"oci://127.0.0.1:5000":           "the repository is missing",
		"oci://127.0.0.1:5000/":          "the repository is missing",
		"oci://127.0.0.1:0/a":            `the port "0" is not a number from 1 to 65535`,
		"oci://127.0.0.1:70000/a":        `the port "70000"`,
		"oci://127.0.0.1:/a":             `the port ""`,
		"oci://127.0.0.1:5000/Upper":     "not a valid OCI repository name",
		"oci://127.0.0.1:5000/a//b":      "not a valid OCI repository name",
		"oci://127.0.0.1:5000/a:latest":  "a tag or digest is not allowed",
		"oci://user:pw@127.0.0.1:5000/a": "credentials do not belong in the URL",
		"oci://127.0.0.1:5000/a?x=1":     "a query or fragment",
		"oci://bad_host/a":               `the host "bad_host" is not a host name`,
		"oci://[::1/a":                   "lacks its closing ]",
		"oci://[zz]:5000/a":              "not an IPv6 address",
	} {
		_, err := Parse(in, false)
		if err == nil {
			t.Errorf("Parse(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "--remote-cache ") || !strings.Contains(err.Error(), "oci://HOST[:PORT]/REPOSITORY") {
			t.Errorf("Parse(%q): %v\nwant the option, %q and the valid form", in, err, want)
		}
	}
}

func TestTags(t *testing.T) {
	key := strings.Repeat("ab", 32)
	if got := StageTag(key); got != "stage-"+key || len(got) > 128 {
		t.Errorf("StageTag = %q", got)
	}
	if got := DebTag(key); got != "deb-"+key {
		t.Errorf("DebTag = %q", got)
	}
	r, _ := Parse("oci://127.0.0.1:5000/vmdeb/cache", false)
	if r.String() != "oci://127.0.0.1:5000/vmdeb/cache" || r.Reference() != "127.0.0.1:5000/vmdeb/cache" {
		t.Errorf("String %q, Reference %q", r.String(), r.Reference())
	}
}

var testRef = Ref{Host: "127.0.0.1:5000", Repo: "vmdeb/cache", PlainHTTP: true}

// localEntry stores an entry whose archive is data in a new local cache.
func localEntry(t *testing.T, key, stage string, data []byte) (*stagecache.Cache, *stagecache.Entry) {
	t.Helper()
	return localEntryFormat(t, key, stage, stagecache.FormatTar, data)
}

// localEntryFormat stores an entry of an archive format in a new local cache.
func localEntryFormat(t *testing.T, key, stage, format string, data []byte) (*stagecache.Cache, *stagecache.Entry) {
	t.Helper()
	c, err := stagecache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	e := &stagecache.Entry{Key: key, Config: "test", Stage: stage, Format: format, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Inputs: stagecache.Inputs{{Name: "suite", Value: "trixie"}}}
	if err := c.Import(context.Background(), e, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Lookup(key)
	if !ok {
		t.Fatal("imported entry not found")
	}
	return c, got
}

func push(t *testing.T, cl *Client, c *stagecache.Cache, e *stagecache.Entry) string {
	t.Helper()
	ex, path, done, err := c.Export(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	dg, present, err := cl.PushStage(context.Background(), ex, path)
	if err != nil || present {
		t.Fatalf("PushStage: %s %v %v", dg, present, err)
	}
	return dg
}

// noTemps checks that a refused pull left nothing in the local cache.
func noTemps(t *testing.T, c *stagecache.Cache) {
	t.Helper()
	ents, _ := os.ReadDir(c.Dir)
	for _, e := range ents {
		t.Errorf("left in the local cache: %s", e.Name())
	}
}

func TestStageRoundTrip(t *testing.T) {
	ctx := context.Background()
	key := strings.Repeat("1f", 32)
	data := bytes.Repeat([]byte("a root file system "), 5000)
	src, e := localEntry(t, key, "packages", data)
	cl := NewWithTarget(testRef, memory.New())
	dg := push(t, cl, src, e)
	if !strings.HasPrefix(dg, "sha256:") {
		t.Errorf("digest %q", dg)
	}
	// A second push sends nothing.
	ex, path, done, _ := src.Export(ctx, e)
	dg2, present, err := cl.PushStage(ctx, ex, path)
	done()
	if err != nil || !present || dg2 != dg {
		t.Errorf("second push: %s %v %v", dg2, present, err)
	}

	dst, _ := stagecache.Open(t.TempDir())
	if _, err := cl.PullStage(ctx, strings.Repeat("2e", 32), "packages", dst); !errors.Is(err, ErrMiss) {
		t.Errorf("pull of an absent key: %v, want ErrMiss", err)
	}
	got, err := cl.PullStage(ctx, key, "packages", dst)
	if err != nil || got != dg {
		t.Fatalf("PullStage: %s %v", got, err)
	}
	pe, ok := dst.Lookup(key)
	if !ok || pe.SHA256 != e.SHA256 || pe.Stage != "packages" {
		t.Fatalf("pulled entry: %+v %v", pe, ok)
	}
	b, _ := os.ReadFile(filepath.Join(pe.Dir(), "rootfs.tar"))
	if !bytes.Equal(b, data) {
		t.Error("pulled archive differs")
	}
	// The same content makes the same manifest (its date is the entry's).
	cl2 := NewWithTarget(testRef, memory.New())
	if dg3 := push(t, cl2, src, e); dg3 != dg {
		t.Errorf("manifest digest not reproducible: %s vs %s", dg3, dg)
	}
	// Asked for another stage under that key: refused.
	dst2, _ := stagecache.Open(t.TempDir())
	if _, err := cl.PullStage(ctx, key, "bootstrap", dst2); !errors.Is(err, ErrRefused) {
		t.Errorf("pull as another stage: %v, want a refusal", err)
	}
	noTemps(t, dst2)
}

// tampering is a registry that alters the blob with one digest as it
// serves it (what flipping bytes in its storage does).
type tampering struct {
	oras.Target
	dg digest.Digest
}

func (t tampering) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := t.Target.Fetch(ctx, d)
	if err != nil || d.Digest != t.dg {
		return rc, err
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[len(b)/2] ^= 0xff
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestStagePullRefusesWrongDigest(t *testing.T) {
	key := strings.Repeat("3d", 32)
	data := bytes.Repeat([]byte("tree "), 10000)
	src, e := localEntry(t, key, "bootstrap", data)
	store := memory.New()
	push(t, NewWithTarget(testRef, store), src, e)
	layer := digest.NewDigestFromEncoded(digest.SHA256, e.SHA256)
	cl := NewWithTarget(testRef, tampering{store, layer})
	dst, _ := stagecache.Open(t.TempDir())
	_, err := cl.PullStage(context.Background(), key, "bootstrap", dst)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("tampered archive: %v, want a refusal", err)
	}
	if _, ok := dst.Lookup(key); ok {
		t.Error("the tampered entry was stored")
	}
	noTemps(t, dst)
	if cl.Down() != nil {
		t.Error("a refused artifact marked the registry down")
	}
}

// pushRaw stores an artifact built by hand: entry.json as given, the
// archive as given.
func pushRaw(t *testing.T, store oras.Target, key string, entry, archive []byte) {
	t.Helper()
	ctx := context.Background()
	cfg := content.NewDescriptorFromBytes(StageEntryType, entry)
	layer := content.NewDescriptorFromBytes(StageArchiveType, archive)
	for _, b := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{cfg, entry}, {layer, archive}} {
		if err := store.Push(ctx, b.d, bytes.NewReader(b.b)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := oras.PackManifest(ctx, store, oras.PackManifestVersion1_1, StageArtifactType, oras.PackManifestOptions{ConfigDescriptor: &cfg, Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Tag(ctx, d, StageTag(key)); err != nil {
		t.Fatal(err)
	}
}

func TestStagePullRefusesWrongEntry(t *testing.T) {
	key := strings.Repeat("4c", 32)
	archive := []byte("the archive the registry holds")
	sum := sha256.Sum256(archive)
	good := stagecache.Entry{Key: key, Stage: "bootstrap", Format: "tar", Size: int64(len(archive)), SHA256: hex.EncodeToString(sum[:])}
	for name, c := range map[string]struct {
		edit func(e *stagecache.Entry)
		want string
	}{
		"sha256": {func(e *stagecache.Entry) { e.SHA256 = strings.Repeat("0", 64) }, "its entry records SHA256 0000"},
		"key":    {func(e *stagecache.Entry) { e.Key = strings.Repeat("5b", 32) }, "the build computed " + key},
		"size":   {func(e *stagecache.Entry) { e.Size++ }, "its entry records 31 bytes"},
		"format": {func(e *stagecache.Entry) { e.Format = "reflink" }, `format is "reflink"`},
		// A compressed archive's entry under a plain tar's media type.
		"tar.zst": {func(e *stagecache.Entry) { e.Format = stagecache.FormatTarZstd }, `format is "tar.zst", its layer's media type ` + StageArchiveType},
		"garbage": {nil, "its entry.json"},
	} {
		t.Run(name, func(t *testing.T) {
			e := good
			var data []byte
			if c.edit != nil {
				c.edit(&e)
				data, _ = json.Marshal(e)
			} else {
				data = []byte("{not json")
			}
			store := memory.New()
			pushRaw(t, store, key, data, archive)
			dst, _ := stagecache.Open(t.TempDir())
			_, err := NewWithTarget(testRef, store).PullStage(context.Background(), key, "bootstrap", dst)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, c.want)
			}
			noTemps(t, dst)
		})
	}
	// The unedited entry is accepted: the cases above fail for their edit.
	store := memory.New()
	data, _ := json.Marshal(good)
	pushRaw(t, store, key, data, archive)
	dst, _ := stagecache.Open(t.TempDir())
	if _, err := NewWithTarget(testRef, store).PullStage(context.Background(), key, "bootstrap", dst); err != nil {
		t.Fatalf("the correct entry: %v", err)
	}
}

func TestDebRoundTrip(t *testing.T) {
	ctx := context.Background()
	deb := []byte("!<arch>\ndebian-binary   a package")
	sum := sha256.Sum256(deb)
	sha := hex.EncodeToString(sum[:])
	path := filepath.Join(t.TempDir(), "p.deb")
	os.WriteFile(path, deb, 0o644)
	store := memory.New()
	cl := NewWithTarget(testRef, store)
	var buf bytes.Buffer
	if err := cl.PullDeb(ctx, sha, int64(len(deb)), &buf); !errors.Is(err, ErrMiss) {
		t.Errorf("absent package: %v", err)
	}
	if pushed, err := cl.PushDeb(ctx, "p_1_amd64.deb", sha, int64(len(deb)), path); err != nil || !pushed {
		t.Fatalf("PushDeb: %v %v", pushed, err)
	}
	if pushed, err := cl.PushDeb(ctx, "p_1_amd64.deb", sha, int64(len(deb)), path); err != nil || pushed {
		t.Errorf("second PushDeb: %v %v (want nothing sent)", pushed, err)
	}
	if err := cl.PullDeb(ctx, sha, int64(len(deb)), &buf); err != nil || !bytes.Equal(buf.Bytes(), deb) {
		t.Fatalf("PullDeb: %v", err)
	}
	// The index says another size: refused before anything is read.
	buf.Reset()
	if err := cl.PullDeb(ctx, sha, int64(len(deb))+1, &buf); !errors.Is(err, ErrRefused) {
		t.Errorf("size mismatch: %v", err)
	}
	// Altered in the registry's storage: refused.
	buf.Reset()
	bad := NewWithTarget(testRef, tampering{store, digest.NewDigestFromEncoded(digest.SHA256, sha)})
	if err := bad.PullDeb(ctx, sha, int64(len(deb)), &buf); !errors.Is(err, ErrRefused) {
		t.Errorf("tampered package: %v", err)
	}
}

// TestRegistryRefuses: a registry that answers every request with an
// error, and one that is not there: the first failure marks the client
// down, later calls give up at once, and neither is a miss or a refusal.
func TestRegistryRefuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	for name, host := range map[string]string{"503": strings.TrimPrefix(srv.URL, "http://"), "closed port": closed} {
		t.Run(name, func(t *testing.T) {
			r, err := Parse("oci://"+host+"/vmdeb/cache", false)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := New(*r)
			if err != nil {
				t.Fatal(err)
			}
			dst, _ := stagecache.Open(t.TempDir())
			_, err = cl.PullStage(context.Background(), strings.Repeat("6a", 32), "bootstrap", dst)
			if err == nil || errors.Is(err, ErrMiss) || errors.Is(err, ErrRefused) {
				t.Fatalf("pull from a failing registry: %v", err)
			}
			if cl.Down() == nil {
				t.Fatal("the client is not marked down")
			}
			start := time.Now()
			_, err = cl.PullStage(context.Background(), strings.Repeat("7b", 32), "packages", dst)
			if err == nil || !strings.Contains(err.Error(), "registry unreachable") || time.Since(start) > 100*time.Millisecond {
				t.Errorf("second pull: %v after %v, want an immediate give-up", err, time.Since(start))
			}
			if _, err := cl.PushDeb(context.Background(), "p.deb", strings.Repeat("8c", 32), 1, "/nonexistent"); err == nil {
				t.Error("push to a down registry succeeded")
			}
			noTemps(t, dst)
		})
	}
}

// stalling is a registry that sends part of one blob, then nothing.
type stalling struct {
	oras.Target
	dg digest.Digest
}

func (s stalling) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := s.Target.Fetch(ctx, d)
	if err != nil || d.Digest != s.dg {
		return rc, err
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	return io.NopCloser(io.MultiReader(bytes.NewReader(b[:len(b)/2]), stalled{ctx})), nil
}

// stalled blocks until its context ends, as a connection does once
// cancelled.
type stalled struct{ ctx context.Context }

func (s stalled) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

func TestStallGivenUp(t *testing.T) {
	old := StallTimeout
	StallTimeout = 200 * time.Millisecond
	defer func() { StallTimeout = old }()
	key := strings.Repeat("9d", 32)
	src, e := localEntry(t, key, "packages", bytes.Repeat([]byte("x"), 100000))
	store := memory.New()
	push(t, NewWithTarget(testRef, store), src, e)
	cl := NewWithTarget(testRef, stalling{store, digest.NewDigestFromEncoded(digest.SHA256, e.SHA256)})
	dst, _ := stagecache.Open(t.TempDir())
	start := time.Now()
	_, err := cl.PullStage(context.Background(), key, "packages", dst)
	if err == nil || !strings.Contains(err.Error(), "the registry stalled: no data moved for 200ms") || cl.Down() == nil {
		t.Fatalf("stalled pull: %v (down: %v)", err, cl.Down())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
	noTemps(t, dst)
	// A context the caller cancels is not the registry's fault.
	cl2 := NewWithTarget(testRef, stalling{store, digest.NewDigestFromEncoded(digest.SHA256, e.SHA256)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := cl2.PullStage(ctx, key, "packages", dst); err == nil || cl2.Down() != nil {
		t.Errorf("cancelled pull: %v, down %v", err, cl2.Down())
	}
}

// TestStageRoundTripZstd: a compressed entry (what vmdeb saves) travels
// under its own media type and arrives as the same compressed archive.
func TestStageRoundTripZstd(t *testing.T) {
	ctx := context.Background()
	key := strings.Repeat("3d", 32)
	data := []byte("\x28\xb5\x2f\xfd stands for a zstd stream")
	src, e := localEntryFormat(t, key, "packages", stagecache.FormatTarZstd, data)
	cl := NewWithTarget(testRef, memory.New())
	push(t, cl, src, e)
	_, m, err := cl.manifest(ctx, StageTag(key), StageArtifactType)
	if err != nil {
		t.Fatal(err)
	}
	if l := m.Layers[0]; l.MediaType != StageArchiveZstdType || l.Annotations[ocispec.AnnotationTitle] != "rootfs.tar.zst" {
		t.Errorf("layer %s titled %q, want %s titled rootfs.tar.zst", l.MediaType, l.Annotations[ocispec.AnnotationTitle], StageArchiveZstdType)
	}
	dst, _ := stagecache.Open(t.TempDir())
	if _, err := cl.PullStage(ctx, key, "packages", dst); err != nil {
		t.Fatal(err)
	}
	pe, ok := dst.Lookup(key)
	if !ok || pe.Format != stagecache.FormatTarZstd {
		t.Fatalf("pulled entry: %+v %v", pe, ok)
	}
	if b, _ := os.ReadFile(filepath.Join(pe.Dir(), "rootfs.tar.zst")); !bytes.Equal(b, data) {
		t.Error("pulled archive differs")
	}
}
