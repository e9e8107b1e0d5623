package live

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The ISO's file system fills up, while the files are gathered (16 MiB)
// or while xorriso writes the image (40 MiB): a clear error that says so,
// and nothing left under the ISO's name or a temporary one.
func TestBuildISODiskFull(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	for _, size := range []string{"16m", "40m"} {
		t.Run(size, func(t *testing.T) {
			dir, rootfs, squashfs := isoFixture(t)
			// Random content: nothing can shrink it.
			writeFile(t, squashfs, randomBytes(24<<20))
			outDir := filepath.Join(dir, "out")
			if err := os.Mkdir(outDir, 0o755); err != nil {
				t.Fatal(err)
			}
			privateTmpfs(t, outDir, size)
			out := filepath.Join(outDir, "live.iso")
			err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "V"})
			if err == nil {
				t.Fatalf("a 24 MiB ISO was written onto a %s file system", size)
			}
			t.Logf("error: %v", err)
			msg := strings.ReplaceAll(err.Error(), dir, "DIR") // the test's name is in the path
			if !strings.Contains(msg, "no space left") && !strings.Contains(msg, "not enough space") {
				t.Errorf("the error does not say the disk is full: %v", err)
			}
			if !strings.Contains(err.Error(), outDir) {
				t.Errorf("the error does not name where: %v", err)
			}
			if names := dirNames(t, outDir); len(names) != 0 {
				t.Errorf("left behind on the full file system: %q", names)
			}
		})
	}
}
