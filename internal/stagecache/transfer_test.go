package stagecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// exportImport moves entry e of cache c into a new cache (as the remote
// cache does) and restores it there; the restored tree must be root's.
func exportImport(t *testing.T, c *Cache, e *Entry, root string) {
	t.Helper()
	ex, path, done, err := c.Export(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if ex.Format != FormatTarZstd || len(ex.SHA256) != 64 || ex.Key != e.Key {
		t.Fatalf("exported entry: %+v", ex)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst, _ := Open(filepath.Join(t.TempDir(), "other"))
	if err := dst.Import(context.Background(), ex, f); err != nil {
		t.Fatal(err)
	}
	got, ok := dst.Lookup(e.Key)
	if !ok || got.Stage != e.Stage {
		t.Fatalf("imported entry: %+v %v", got, ok)
	}
	out := t.TempDir()
	if err := dst.Restore(context.Background(), got, out); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "var/cache/apt/archives/big_1_amd64.deb"))
	if a, b := dirLinksOut(listing(t, root)), dirLinksOut(listing(t, out)); a != b {
		t.Errorf("the tree moved through Export and Import differs:\n--- saved\n%s--- restored\n%s", a, b)
	}
}

func TestExportImport(t *testing.T) {
	needTar(t)
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	root := tree(t)
	in := inputs("suite", "trixie")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "bootstrap", Inputs: in}
	if err := c.Save(context.Background(), e, root, []string{"./var/cache/apt/archives/*.deb"}); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Lookup(e.Key)
	exportImport(t, c, got, root)
}

func TestImportRefusesWhatDoesNotMatch(t *testing.T) {
	data := []byte("an archive")
	key := strings.Repeat("ab", 32)
	good := Entry{Key: key, Stage: "bootstrap", Format: "tar", Size: int64(len(data)), SHA256: "2d8a8bb2b5a1c1c3cd4e8f6d1ec5d6bdbe0e7ffb1aa5ad3acd46fa2a2b24ba2b"}
	for name, e := range map[string]Entry{
		"sha256":  good,
		"shorter": func() Entry { e := good; e.Size++; return e }(),
		"longer":  func() Entry { e := good; e.Size--; return e }(),
		"reflink": func() Entry { e := good; e.Format = "reflink"; return e }(),
	} {
		c, _ := Open(t.TempDir())
		err := c.Import(context.Background(), &e, bytes.NewReader(data))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
		if _, ok := c.Lookup(key); ok {
			t.Errorf("%s: the entry was stored", name)
		}
		if ents, _ := os.ReadDir(c.Dir); len(ents) > 0 {
			t.Errorf("%s: left %v", name, ents)
		}
	}
}

func TestExportReflinkEntry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("no mkfs.btrfs")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	f, _ := os.Create(img)
	f.Truncate(256 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.btrfs: %v %s", err, out)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Skipf("no private mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount -o loop: %v %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	root := filepath.Join(mnt, "work", "rootfs")
	os.MkdirAll(root, 0o755)
	makeTree(root)
	// The small file system is below any reserve the cache keeps.
	oldStat := statFS
	statFS = func(string) (int64, int64, error) { return 50 << 30, 100 << 30, nil }
	t.Cleanup(func() { statFS = oldStat })
	c, _ := Open(filepath.Join(mnt, "cache"))
	in := inputs("suite", "trixie")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "packages", Inputs: in}
	if err := c.Save(context.Background(), e, root, []string{"./var/cache/apt/archives/*.deb"}); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Lookup(e.Key)
	if got.Format != "reflink" {
		t.Skipf("no reflinks here (format %s)", got.Format)
	}
	exportImport(t, c, got, root)
	if tmps, _ := filepath.Glob(filepath.Join(c.Dir, tmpPrefix+"*")); len(tmps) > 0 {
		t.Errorf("the export's temporary archive is left: %v", tmps)
	}
}

// dirLinksOut drops directories' link counts from a listing: btrfs keeps
// 1 for every directory, ext4 counts subdirectories.
func dirLinksOut(l string) string {
	return regexp.MustCompile(`(?m)^(\S+ d\S+ .*) \d+ (\d+:\d+)$`).ReplaceAllString(l, "$1 $2")
}

// TestPlainTarEntryRestored: an entry whose archive is a tar as it is
// (earlier versions saved those; a registry may hold them) is imported
// and restored like a compressed one, and a compressed one's archive is
// a zstd stream of that tar.
func TestPlainTarEntryRestored(t *testing.T) {
	needTar(t)
	root := tree(t)
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	in := inputs("suite", "trixie")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "bootstrap", Inputs: in}
	if err := c.Save(context.Background(), e, root, nil); err != nil {
		t.Fatal(err)
	}
	zst, err := os.ReadFile(e.archive())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(zst, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("the saved archive is not a zstd stream: % x", zst[:8])
	}
	zr, err := zstd.NewReader(bytes.NewReader(zst))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	zr.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(plain)
	old := &Entry{Key: e.Key, Config: "img", Stage: "bootstrap", Inputs: in, Format: FormatTar, Size: int64(len(plain)), SHA256: hex.EncodeToString(sum[:])}
	dst, _ := Open(filepath.Join(t.TempDir(), "other"))
	if err := dst.Import(context.Background(), old, bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	got, ok := dst.Lookup(e.Key)
	if !ok || got.Format != FormatTar {
		t.Fatalf("imported plain entry: %+v %v", got, ok)
	}
	if _, err := os.Stat(filepath.Join(got.Dir(), "rootfs.tar")); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := dst.Restore(context.Background(), got, out); err != nil {
		t.Fatal(err)
	}
	if a, b := listing(t, root), listing(t, out); a != b {
		t.Errorf("restored from a plain tar:\n--- saved\n%s--- restored\n%s", a, b)
	}
}
