package aptauth

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct{ in, url, machine, login, pass string }{
		{"http://user:s3cret@mirror.example:8080/debian/", "http://mirror.example:8080/debian/", "http://mirror.example:8080/debian", "user", "s3cret"},
		{"https://u@host.example/debian", "https://host.example/debian", "https://host.example/debian", "u", ""},
		{"http://host.example/debian", "http://host.example/debian", "", "", ""},
		{"file:///srv/mirror", "file:///srv/mirror", "", "", ""},
	} {
		u, e := Split(tc.in)
		if u != tc.url {
			t.Errorf("Split(%q) url %q, want %q", tc.in, u, tc.url)
		}
		if strings.Contains(u, "s3cret") || strings.Contains(u, "@") {
			t.Errorf("Split(%q) left credentials in %q", tc.in, u)
		}
		if tc.machine == "" {
			if e != nil {
				t.Errorf("Split(%q) made an entry %+v", tc.in, e)
			}
			continue
		}
		if e == nil || e.Machine != tc.machine || e.Login != tc.login || e.Password != tc.pass {
			t.Errorf("Split(%q) entry %+v", tc.in, e)
		}
	}
}

func TestParse(t *testing.T) {
	set, err := Parse([]byte("# comment\nmachine example.org/debian login alice password a1\nmachine http://plain.example:81\n login bob\n password b2 # end\n"), "auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(set) != 2 || set[0] != (Entry{"example.org/debian", "alice", "a1"}) || set[1] != (Entry{"http://plain.example:81", "bob", "b2"}) {
		t.Fatalf("parsed %+v", set)
	}
	again, err := Parse(set.Format(), "formatted")
	if err != nil || len(again) != 2 || again[1] != set[1] {
		t.Errorf("Format does not read back: %+v %v", again, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"login x password y\n", "auth.conf:1: login before any machine"},
		{"machine a\nlogin\n", "auth.conf:2: \"login\" without a value"},
		{"machine a login x\nuser y\n", "auth.conf:2: unknown key \"user\" (valid: machine, login, password)"},
		{"machine a password secretvalue\n", "auth.conf: machine a has no login"},
	} {
		_, err := Parse([]byte(tc.in), "auth.conf")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretvalue") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

func TestLookup(t *testing.T) {
	set := Set{
		{Machine: "https-only.example/debian", Login: "a"},
		{Machine: "http://plain.example/debian", Login: "b"},
		{Machine: "port.example:8080", Login: "c"},
	}
	for _, tc := range []struct{ url, login string }{
		{"https://https-only.example/debian/dists/trixie/InRelease", "a"},
		{"http://https-only.example/debian/dists/trixie/InRelease", ""}, // apt: no scheme = https only
		{"https://https-only.example/other/x", ""},
		{"http://plain.example/debian/pool/main/a.deb", "b"},
		{"https://plain.example/debian/pool/main/a.deb", ""},
		{"https://port.example:8080/x", "c"},
		{"https://port.example/x", ""},
	} {
		e := set.Lookup(tc.url)
		got := ""
		if e != nil {
			got = e.Login
		}
		if got != tc.login {
			t.Errorf("Lookup(%s) = %q, want %q", tc.url, got, tc.login)
		}
	}
}
