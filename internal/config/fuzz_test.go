package config

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse: no input makes the loader panic, every rejection names the
// file, and no input keeps it busy (alias and size bombs among the seeds).
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("outputs:\n  - {type: disk, size: 4G}\n"))
	f.Add([]byte("users: {name: x}\nhook-timeout: -1s\n"))
	f.Add([]byte("live:\n  volume-id: \"\\u00e9\"\n"))
	f.Add([]byte(aliasBomb(1200, 4)))
	f.Add([]byte(billionLaughs))
	f.Add([]byte(good + "---\nname: two\n"))
	f.Add([]byte(strings.Replace(good, "password: live", "password: \"a\\nroot:x\"", 1)))
	f.Add([]byte(good + "hostname: a.b.example.org\napt-mirror: \"[trusted=yes] http://x/\"\n"))
	f.Add([]byte("include: [base.yaml, /dev/zero, /fuzz/image.yaml]\npackages+: [a]\n"))
	f.Add([]byte(good + "live:\n  kernel-params+: [quiet]\nname+: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		defer func() {
			// Generous for a loaded machine; a bomb takes minutes.
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%d bytes took %s", len(data), d)
			}
		}()
		s, err := Parse(data, "/fuzz/image.yaml")
		if err != nil {
			if !strings.Contains(err.Error(), "/fuzz/image.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, e := range s.Validate() {
			if e.File != "/fuzz/image.yaml" || e.Msg == "" {
				t.Fatalf("validation error without file or message: %+v", e)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4G", "1.5MiB", "", "9999999999T", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("%q parsed to %d", s, n)
		}
	})
}
