package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vmdeb/internal/archive"
)

// faultMirror serves the host's mirror on 127.0.0.1 through the test, which
// can change what it passes on: the real archive, with one file tampered
// with or one download cut in the middle.
type faultMirror struct {
	upstream string
	srv      *httptest.Server
	mu       sync.Mutex
	// alter, when set, may change a file's content (path relative to
	// the mirror's top).
	alter func(rel string, body []byte) []byte
	// cut, when set and true for a file, sends half of it and then
	// nothing until the client goes away.
	cut func(rel string) bool
	// cutSHA and cutSize say which file was cut (its whole content).
	cutSHA  string
	cutSize int
}

func newFaultMirror(t *testing.T, upstream string) *faultMirror {
	m := &faultMirror{upstream: strings.TrimRight(upstream, "/")}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

// URL is the mirror's address for the bootstrapper.
func (m *faultMirror) URL() string { return m.srv.URL + "/mirror" }

func (m *faultMirror) set(alter func(string, []byte) []byte, cut func(string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alter, m.cut = alter, cut
}

func (m *faultMirror) serve(w http.ResponseWriter, r *http.Request) {
	rel, ok := strings.CutPrefix(r.URL.Path, "/mirror/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, m.upstream+"/"+rel, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.WriteHeader(resp.StatusCode)
		return
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	m.mu.Lock()
	alter, cut := m.alter, m.cut
	if alter != nil {
		body = alter(rel, body)
	}
	if cut != nil && cut(rel) {
		sum := sha256.Sum256(body)
		m.cutSHA, m.cutSize = hex.EncodeToString(sum[:]), len(body)
	} else {
		cut = nil
	}
	m.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if cut != nil {
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	w.Write(body)
}

// flip changes one byte in the middle of b.
func flip(b []byte) []byte {
	b = append([]byte{}, b...)
	b[len(b)/2] ^= 0x20
	return b
}

// TestNativeRefusesTamperedArchive: the real archive with one file
// changed on its way: the bootstrap refuses it, naming the file, before
// anything of it is installed or kept.
func TestNativeRefusesTamperedArchive(t *testing.T) {
	upstream := needArchive(t)
	for _, tc := range []struct {
		name  string
		alter func(rel string, body []byte) []byte
		want  []string // in the error
	}{
		{"InRelease", func(rel string, body []byte) []byte {
			if !strings.HasSuffix(rel, "/InRelease") {
				return body
			}
			// One hex digit of a listed hash, inside the signed text.
			i := bytes.Index(body, []byte("\nSHA256:\n ")) + len("\nSHA256:\n ")
			if i < len("\nSHA256:\n ") {
				t.Error("the InRelease has no SHA256 field")
				return body
			}
			body = append([]byte{}, body...)
			if body[i] == '0' {
				body[i] = '1'
			} else {
				body[i] = '0'
			}
			return body
		}, []string{"dists/trixie/InRelease", "BAD signature"}},
		{"Packages", func(rel string, body []byte) []byte {
			if strings.Contains(rel, "/binary-amd64/") {
				return flip(body)
			}
			return body
		}, []string{"dists/trixie/main/binary-amd64/Packages", "does not match the archive's index", "refused"}},
		{"deb", func(rel string, body []byte) []byte {
			if strings.HasPrefix(rel, "pool/main/d/dpkg/dpkg_") {
				return flip(body)
			}
			return body
		}, []string{"pool/main/d/dpkg/dpkg_", "does not match the archive's index", "refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFaultMirror(t, upstream)
			m.set(tc.alter, nil)
			root := newTarget(t)
			cache := t.TempDir() // empty: every file comes through the mirror
			log, term := testLog(t)
			n := &Native{CacheDir: cache}
			err := n.Bootstrap(context.Background(), log, Request{Suite: "trixie", Arch: "amd64", Mirror: m.URL(),
				Components: []string{"main"}, Variant: "minbase", Target: root})
			if err == nil {
				t.Fatalf("a tampered %s was accepted\n%s", tc.name, term.String())
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
			mountsLeft(t, root)
			if _, err := os.Stat(filepath.Join(root, "var/lib/dpkg/status")); err == nil {
				t.Error("dpkg ran on a tampered archive")
			}
			// Nothing tampered is kept: the by-name index lists only
			// verified files, and no partial download remains.
			if names, _ := filepath.Glob(filepath.Join(cache, "by-name", "dpkg_*")); len(names) > 0 && tc.name == "deb" {
				t.Errorf("the tampered package is in the cache: %v", names)
			}
			if left, _ := filepath.Glob(filepath.Join(cache, "tmp", "*")); len(left) > 0 {
				t.Errorf("partial files left: %v", left)
			}
		})
	}
}

// TestNativeKilledDownload kills a bootstrap (SIGKILL: no cleanup runs)
// in the middle of a package's download, then bootstraps again with the
// same cache: the partial file is detected and replaced, and the system
// is whole.
func TestNativeKilledDownload(t *testing.T) {
	if dir := os.Getenv("VMDEB_TEST_KILLED_TARGET"); dir != "" {
		// The child: bootstrap until the parent kills it.
		log, _ := testLog(t)
		n := &Native{CacheDir: os.Getenv("VMDEB_TEST_KILLED_CACHE")}
		err := n.Bootstrap(context.Background(), log, Request{Suite: "trixie", Arch: "amd64", Mirror: os.Getenv("VMDEB_TEST_KILLED_MIRROR"),
			Components: []string{"main"}, Variant: "minbase", Target: dir})
		t.Fatalf("the bootstrap was not killed (it ended: %v)", err)
	}
	upstream := needArchive(t)
	m := newFaultMirror(t, upstream)
	// The first package requested (the largest) stalls half way.
	var once sync.Once
	m.set(nil, func(rel string) bool {
		hit := false
		if strings.HasSuffix(rel, ".deb") {
			once.Do(func() { hit = true })
		}
		return hit
	})
	cache := filepath.Join(t.TempDir(), "cache")
	killed := newTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNativeKilledDownload$", "-test.v")
	cmd.Env = append(os.Environ(), "VMDEB_TEST_KILLED_TARGET="+killed, "VMDEB_TEST_KILLED_CACHE="+cache, "VMDEB_TEST_KILLED_MIRROR="+m.URL())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the cut file's first half is on disk, then kill.
	var partial string
	for {
		m.mu.Lock()
		sha, size := m.cutSHA, m.cutSize
		m.mu.Unlock()
		if sha != "" {
			partial = filepath.Join(cache, "tmp", sha+".partial")
			if fi, err := os.Stat(partial); err == nil && fi.Size() >= int64(size/2) {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the child never wrote half the cut file:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	fi, err := os.Stat(partial)
	if err != nil || fi.Size() == 0 {
		t.Fatalf("the killed bootstrap left no partial download: %v\n%s", err, out.String())
	}
	sha := strings.TrimSuffix(filepath.Base(partial), ".partial")
	if _, err := os.Stat(filepath.Join(cache, "sha256", sha[:2], sha)); err == nil {
		t.Fatal("a partial download reached the store")
	}

	m.set(nil, nil)
	root := newTarget(t)
	log, term := testLog(t)
	n := &Native{CacheDir: cache}
	if err := n.Bootstrap(context.Background(), log, Request{Suite: "trixie", Arch: "amd64", Mirror: m.URL(),
		Components: []string{"main"}, Variant: "minbase", Target: root}); err != nil {
		t.Fatalf("the bootstrap after a killed one: %v\n%s", err, term.String())
	}
	if !strings.Contains(term.String(), "partial download") {
		t.Errorf("the partial file was not reported:\n%s", term.String())
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial file is still there: %v", err)
	}
	// The file it was is now whole and verified in the store.
	p := n.archive.Index.All()
	found := false
	for _, pkg := range p {
		if pkg.SHA256 == sha {
			found = true
			if err := archive.Verify(n.cache.Path(sha), pkg.Filename, archive.FileInfo{Size: pkg.Size, SHA256: sha}); err != nil {
				t.Errorf("the replaced file: %v", err)
			}
		}
	}
	if !found {
		t.Errorf("the cut file %s is no package of the index", sha)
	}
	mountsLeft(t, root)
	checkSystem(t, root)
}
