package build

import (
	"os"
	"strings"
	"testing"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
)

// Preflight looks programs up on the PATH the build's commands run with:
// debootstrap and chroot live in /usr/sbin, which a user's PATH may lack.
func TestMissingToolsSbin(t *testing.T) {
	for _, p := range []string{"/usr/sbin/debootstrap", "/usr/sbin/chroot"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: %v", p, err)
		}
	}
	t.Setenv("PATH", t.TempDir())
	s := spec(t, "")
	s.Outputs = []config.Output{{Type: config.Tarball, Path: "t.tar"}}
	p := &Plan{Spec: s, Bootstrap: bootstrap.Debootstrap{}}
	miss := p.MissingTools()
	for _, m := range miss {
		if m.What == "debootstrap" || m.What == "chroot" {
			t.Errorf("%s reported missing although the build finds it in /usr/sbin", m)
		}
	}
	// tar is in /usr/bin, which this PATH lacks: the build would not find
	// it either, and the message says how to install it.
	if _, err := os.Stat("/usr/sbin/tar"); err == nil {
		t.Skip("tar in /usr/sbin")
	}
	err := buildlog.MissingError(miss)
	if err == nil || !strings.Contains(err.Error(), "\n  tar (package tar)\n") || !strings.HasSuffix(err.Error(), "install with: apt-get install tar") {
		t.Errorf("got %v, want tar listed with its package", err)
	}
}
