package integration

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vmdeb/internal/apt"
)

// TestMirrorCredentials (issue 14, item 5): a mirror behind HTTP basic
// authentication — a proxy to the host's mirror that answers 401 without
// the right user and password — given as http://USER:PASS@… in the
// config. The build must reach it with the credentials (vmdeb's own
// downloads and apt in the chroot), and the password must appear nowhere:
// not on the terminal, in the log, in `vmdeb check`, nor in the image.
func TestMirrorCredentials(t *testing.T) {
	needRoot(t)
	const secret = "s3cret-Pa55"
	hm, err := apt.DetectHostMirrors("/")
	if err != nil || hm.Mirror == "" {
		t.Skipf("no host mirror: %v", err)
	}
	target, err := url.Parse(hm.Mirror)
	if err != nil {
		t.Fatal(err)
	}
	var vmdebOK, aptOK, refused atomic.Int64
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Header.Del("Authorization") // the real mirror gets none
	}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "builder" || p != secret {
			refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="mirror"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.UserAgent(), "APT") {
			aptOK.Add(1)
		} else {
			vmdebOK.Add(1)
		}
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, `name: authed
suite: trixie
architecture: amd64
kernel: none
variant: minbase
bootstrap: native
mirror: http://builder:`+secret+`@`+ln.Addr().String()+`
packages: [hello]
outputs:
  - {type: tarball, path: authed.tar.gz}
`, nil)
	check := run(t, ctx, "check", "--outdir", out, cfg)
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("build through the authenticated mirror failed (%d):\n%s", r.code, r.stderr)
	}
	if vmdebOK.Load() == 0 || aptOK.Load() == 0 {
		t.Errorf("authenticated requests: vmdeb %d, apt %d (refused %d): both must have come through the credentials", vmdebOK.Load(), aptOK.Load(), refused.Load())
	}
	leaks := map[string]string{"check's output": check.stdout + check.stderr, "the build's output": r.stdout + r.stderr}
	if b, err := os.ReadFile(filepath.Join(out, "authed.build.log")); err == nil {
		leaks["the build log"] = string(b)
	} else {
		t.Error(err)
	}
	for what, text := range leaks {
		if strings.Contains(text, secret) {
			t.Errorf("the password is in %s", what)
		}
	}
	// The tarball holds /etc/shadow: not readable by everybody.
	if fi, err := os.Stat(filepath.Join(out, "authed.tar.gz")); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the tarball's mode: %v %v, want 0600", fi.Mode().Perm(), err)
	}
	img := t.TempDir()
	if o, err := exec.Command("tar", "-xzf", filepath.Join(out, "authed.tar.gz"), "-C", img).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, o)
	}
	filepath.Walk(img, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("the password is in the image: %s", strings.TrimPrefix(p, img))
			}
		}
		return nil
	})
	assertClean(t, work)
}
