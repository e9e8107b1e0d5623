package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/aptauth"
)

// debootstrap's wget reads $HOME/.netrc: host names only, mode 0600, in
// the build's work directory, gone after the bootstrap.
func TestNetrcHome(t *testing.T) {
	work := t.TempDir()
	r := Request{Target: filepath.Join(work, "rootfs"), Auth: aptauth.Set{
		{Machine: "http://mirror.example:8080/debian", Login: "builder", Password: "s3cret"},
		{Machine: "other.example", Login: "o", Password: "p"},
	}}
	env, cleanup, err := netrcHome(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 1 || !strings.HasPrefix(env[0], "HOME="+work+"/") {
		t.Fatalf("env %v", env)
	}
	p := filepath.Join(strings.TrimPrefix(env[0], "HOME="), ".netrc")
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf(".netrc: %v %v", fi, err)
	}
	b, _ := os.ReadFile(p)
	if want := "machine mirror.example login builder password s3cret\nmachine other.example login o password p\n"; string(b) != want {
		t.Errorf(".netrc:\n%s\nwant:\n%s", b, want)
	}
	cleanup()
	if _, err := os.Stat(p); err == nil {
		t.Error(".netrc left after the bootstrap")
	}
	if env, _, _ := netrcHome(Request{Target: r.Target}); env != nil {
		t.Errorf("no credentials: env %v", env)
	}
}
