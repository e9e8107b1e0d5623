package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadDebInfo: a file that claims to be a .deb never makes the reader
// panic or allocate without bound, and every rejection names the file.
func FuzzReadDebInfo(f *testing.F) {
	f.Add(buildDeb(f, testPkg{name: "a", version: "1", arch: "amd64", comp: "gz"}))
	f.Add(buildDeb(f, testPkg{name: "b", version: "1:2.0-1", arch: "all", comp: "none"}))
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Add([]byte("<html>404</html>"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "x.deb")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := ReadDebInfo(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) && !strings.Contains(err.Error(), "x.deb") {
				// The decompressors' own errors come through debMember,
				// which names the file.
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if d.Package == "" || d.Version == "" || d.Architecture == "" {
			t.Fatalf("accepted without the fields: %+v", d)
		}
	})
}
