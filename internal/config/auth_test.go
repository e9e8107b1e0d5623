package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/aptauth"
)

// Credentials in a mirror URL leave the URL (which goes into the image's
// sources, the log and messages) for Auth.
func TestMirrorCredentialsSplit(t *testing.T) {
	p := write(t, good+"mirror: http://builder:s3cret@mirror.example/debian\napt-mirror: https://u:pw2@apt.example/debian\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Mirror != "http://mirror.example/debian" || s.AptMirror != "https://apt.example/debian" {
		t.Errorf("mirrors keep credentials: %q %q", s.Mirror, s.AptMirror)
	}
	want := aptauth.Set{{Machine: "http://mirror.example/debian", Login: "builder", Password: "s3cret"},
		{Machine: "https://apt.example/debian", Login: "u", Password: "pw2"}}
	if len(s.Auth) != 2 || s.Auth[0] != want[0] || s.Auth[1] != want[1] {
		t.Errorf("Auth = %+v, want %+v", s.Auth, want)
	}
	if e := s.Auth.Lookup("http://mirror.example/debian/dists/trixie/InRelease"); e == nil || e.Login != "builder" {
		t.Errorf("the mirror's own URLs do not find its credentials: %+v", e)
	}
}

func TestAptAuthFile(t *testing.T) {
	p := write(t, good+"apt-auth: auth.conf\n")
	dir := filepath.Dir(p)
	os.WriteFile(filepath.Join(dir, "auth.conf"), []byte("machine mirror.example/debian login a password topsecret\n"), 0o600)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Auth) != 1 || s.Auth[0].Password != "topsecret" {
		t.Errorf("Auth = %+v", s.Auth)
	}
	if errs := s.Validate(); len(errs) > 0 || len(s.Auth) != 1 {
		t.Errorf("a second Validate: %v, %d entries", errs, len(s.Auth))
	}

	os.WriteFile(filepath.Join(dir, "auth.conf"), []byte("machine mirror.example\nuser a password topsecret\n"), 0o600)
	_, err = Load(p)
	if err == nil || !strings.Contains(err.Error(), "apt-auth") || !strings.Contains(err.Error(), "auth.conf:2: unknown key \"user\"") {
		t.Errorf("bad auth.conf: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "topsecret") {
		t.Errorf("the error shows the password: %v", err)
	}
	os.Remove(filepath.Join(dir, "auth.conf"))
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "apt-auth") {
		t.Errorf("missing auth.conf: %v", err)
	}
}

func TestOutputModeKey(t *testing.T) {
	base := strings.Replace(good, "    path: out/test.iso\n", "    path: out/test.iso\n  - {type: tarball, path: out/t.tar, mode: %s}\n", 1)
	for _, tc := range []struct{ mode, want string }{
		{`"0644"`, ""},
		{`"0999"`, `outputs[1].mode: "0999" is not a file mode`},
		{`"rw"`, `outputs[1].mode: "rw" is not a file mode`},
		{`"01777"`, `is not a file mode`},
	} {
		_, err := Load(write(t, strings.Replace(base, "%s", tc.mode, 1)))
		if tc.want == "" {
			if err != nil {
				t.Errorf("mode %s: %v", tc.mode, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mode %s: %v, want %q", tc.mode, err, tc.want)
		}
	}
	dirOut := strings.Replace(good, "    path: out/test.iso\n", "    path: out/test.iso\n  - {type: directory, path: out/root, mode: \"0700\"}\n", 1)
	if _, err := Load(write(t, dirOut)); err == nil || !strings.Contains(err.Error(), "a directory output keeps the image's own modes") {
		t.Errorf("mode on a directory output: %v", err)
	}
}
