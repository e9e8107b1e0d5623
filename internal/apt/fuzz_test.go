package apt

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseSources(f *testing.F) {
	f.Add([]byte("Types: deb\nURIs: http://m.example/debian\nSuites: trixie\nComponents: main\n"), true)
	f.Add([]byte("deb [arch=amd64] http://m.example/debian trixie main\n"), false)
	f.Add([]byte("Types: deb\n URIs: x\n\n\n#c\nSuites:\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, deb822 bool) {
		var srcs []Source
		var err error
		if deb822 {
			srcs, err = ParseDeb822(bytes.NewReader(data), "f.sources")
		} else {
			srcs, err = ParseOneLine(bytes.NewReader(data), "f.list")
		}
		if err != nil {
			if !strings.Contains(err.Error(), "f.") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, s := range srcs {
			if s.URI == "" || s.Suite == "" {
				t.Fatalf("an entry without URI or suite: %+v", s)
			}
		}
	})
}

func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Suite: stable\nCodename: trixie\nArchitectures: amd64 arm64\nComponents: main\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSuite: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseRelease(data, "Release"); err != nil && !strings.Contains(err.Error(), "Release") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}
