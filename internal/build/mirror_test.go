package build

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/apt"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
)

func mirrorSpec(t *testing.T, mirror string) *config.Spec {
	t.Helper()
	dir := t.TempDir()
	y := "name: t\nsuite: trixie\narchitecture: amd64\nbootstrap: native\nmirror: " + mirror + "\noutputs:\n  - {type: tarball, path: t.tar}\n"
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(y), 0o644)
	s, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// check's question to the mirror: a mirror that answers nothing, or
// trickles its Release a byte at a time, is named as not answering (with
// the time and the URL), not as lacking the suite; a mirror without the
// suite is named as such.
func TestPlanMirrorAnswers(t *testing.T) {
	defer func(d time.Duration) { apt.AnswerTimeout = d }(apt.AnswerTimeout)
	apt.AnswerTimeout = 600 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/silent/"):
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case strings.HasPrefix(r.URL.Path, "/trickle/"):
			w.Header().Set("Content-Length", "5000")
			for i := 0; i < 5000; i++ {
				if _, err := w.Write([]byte{'S'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, c := range []struct{ path, want string }{
		{"/silent/debian", ":5: mirror: the mirror did not answer within 600ms (" + srv.URL + "/silent/debian/dists/trixie/Release)"},
		{"/trickle/debian", ":5: mirror: the mirror did not answer within 600ms (" + srv.URL + "/trickle/debian/dists/trixie/Release)"},
		{"/missing/debian", ":2: suite: the mirror " + srv.URL + "/missing/debian does not offer trixie"},
	} {
		start := time.Now()
		_, err := NewPlan(context.Background(), mirrorSpec(t, srv.URL+c.path), Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.path, err, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", c.path, d)
		}
	}
}

// apt in the chroot gives up on a mirror that sends nothing for 30 s, and
// the terminal shows which download apt is on.
func TestAptStallOptionsAndProgress(t *testing.T) {
	a := AptInstallArgs([]string{"x"})
	for _, o := range []string{"Acquire::http::Timeout=30", "Acquire::https::Timeout=30", "Acquire::Retries=3"} {
		if !slices.Contains(a, o) {
			t.Errorf("apt's command line lacks %s: %v", o, a)
		}
	}
	var term, file bytes.Buffer
	log := buildlog.New(&file, "log", &term)
	pw := buildlog.NewPackageProgress(log, 0)
	for _, l := range []string{"0 upgraded, 4 newly installed, 0 to remove and 0 not upgraded.", "Need to get 9 MB of archives.",
		"Get:1 http://m/debian trixie/main amd64 a amd64 1 [1 kB]", "Get:2 http://m/debian trixie/main amd64 b amd64 1 [1 kB]"} {
		pw.Line(l)
	}
	if !strings.Contains(term.String(), "downloading: 1/4") {
		t.Errorf("the terminal shows %q", term.String())
	}
}
