package disk

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestUsedInodes(t *testing.T) {
	report := `Inode count:              24
First inode:              11
Inodes per group:         8
Group 0: (Blocks 0-32767) csum 0x11a1 [ITABLE_ZEROED]
  Free inodes: 
Group 1: (Blocks 32768-65535) csum 0xd890
  Free inodes: 11-12, 14-16
Group 2: (Blocks 65536-98303) csum 0xf0dd [INODE_UNINIT]
  Free inodes: 17-24
`
	got, err := usedInodes(report)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{2, 13}; !slices.Equal(got, want) {
		t.Errorf("used inodes %v, want %v", got, want)
	}
	if _, err := usedInodes("Inode count: 24\n"); err == nil {
		t.Error("a report without groups was accepted")
	}
}

// Two builds of one tree, a second apart, under SOURCE_DATE_EPOCH: the
// same bytes, although the kernel gave the staged files new change times.
func TestBuildReproducible(t *testing.T) {
	o := Options{Size: 160 * mib, Arch: archOf(t, "amd64"), ESPSize: 32 * mib, Hostname: "repro",
		SourceDateEpoch: 1700000000, Seed: "repro-test"}
	needBuild(t, o)
	root := fakeRootfs(t)
	var sums [][32]byte
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
			now := time.Now()
			os.Chtimes(filepath.Join(root, "etc/hostname"), now, now) // newer than the epoch
		}
		out := filepath.Join(t.TempDir(), "test.img")
		if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha256.Sum256(data))
		if i == 1 && sums[0] != sums[1] {
			t.Errorf("two builds of the same tree under SOURCE_DATE_EPOCH differ")
		}
	}
}
