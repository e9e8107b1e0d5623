package live

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"vmdeb/internal/buildlog"
)

func TestValidCompression(t *testing.T) {
	for _, c := range []string{"", "xz", "zstd", "gzip", "lz4", "lzo"} {
		if !ValidCompression(c) {
			t.Errorf("ValidCompression(%q) = false", c)
		}
	}
	for _, c := range []string{"XZ", "lzma", "bzip2", "none", " xz"} {
		if ValidCompression(c) {
			t.Errorf("ValidCompression(%q) = true", c)
		}
	}
	if got := Compressions(); got[0] != "xz" || len(got) != 5 {
		t.Errorf("Compressions() = %v", got)
	}
	Compressions()[0] = "changed"
	if Compressions()[0] != "xz" {
		t.Error("Compressions returns the package's own slice")
	}
}

func TestSquashfsArgs(t *testing.T) {
	got := squashfsArgs("/r", "/o.sqfs", SquashfsOptions{}, nil)
	mem := squashfsMemory()
	want := []string{"/r", "/o.sqfs", "-noappend", "-comp", "xz", "-mem", mem}
	if !slices.Equal(got, want) {
		t.Errorf("default:\n got %q\nwant %q", got, want)
	}

	got = squashfsArgs("/r", "/o.sqfs", SquashfsOptions{Compression: "zstd", SourceDateEpoch: 1700000000}, []string{"boot", "proc/*"})
	want = []string{"/r", "/o.sqfs", "-noappend", "-comp", "zstd", "-mem", mem,
		"-reproducible", "-mkfs-time", "1700000000", "-all-time", "1700000000",
		"-wildcards", "-e", "boot", "proc/*"}
	if !slices.Equal(got, want) {
		t.Errorf("epoch and excludes:\n got %q\nwant %q", got, want)
	}
	for _, a := range got {
		if a == "-processors" || a == "-progress" {
			t.Errorf("unexpected %s", a)
		}
	}
}

func TestMemoryFor(t *testing.T) {
	for _, c := range []struct {
		total uint64
		want  string
	}{
		{0, "512M"},        // unknown: the bound
		{24 << 30, "512M"}, // a quarter would be 6 GiB
		{2 << 30, "512M"},
		{1 << 30, "256M"}, // a quarter, as mksquashfs would take
		{100 << 20, "64M"},
	} {
		if got := memoryFor(c.total); got != c.want {
			t.Errorf("memoryFor(%d MiB) = %s, want %s", c.total>>20, got, c.want)
		}
	}
	if m := squashfsMemory(); m == "" || m[len(m)-1] != 'M' {
		t.Errorf("squashfsMemory() = %q", m)
	}
}

func TestExcludes(t *testing.T) {
	got, err := cleanExcludes([]string{"/boot/", "var/cache/apt", "odd*name", "a/./b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"boot", "var/cache/apt", `odd\*name`, "a/b"}
	if !slices.Equal(got, want) {
		t.Errorf("cleanExcludes = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "/", "..", "../etc", "var/../../etc"} {
		if _, err := cleanExcludes([]string{bad}); err == nil {
			t.Errorf("cleanExcludes(%q) accepted", bad)
		}
	}
	if got := mountExcludes([]string{"proc", "we[ird"}); !slices.Equal(got, []string{"proc/*", "proc/.*", `we\[ird/*`, `we\[ird/.*`}) {
		t.Errorf("mountExcludes = %q", got)
	}
	if got := unescape(wildcardEscape(`a*b?c[d]e\f+(g)@h!i`)); got != `a*b?c[d]e\f+(g)@h!i` {
		t.Errorf("unescape(wildcardEscape) = %q", got)
	}
}

func TestParseMountinfo(t *testing.T) {
	info := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
100 22 0:50 / /work/rootfs/proc rw,nosuid - proc proc rw
101 22 0:51 / /work/rootfs/dev rw - tmpfs tmpfs rw
102 101 0:52 / /work/rootfs/dev/pts rw - devpts devpts rw
103 22 254:0 /var/cache /work/rootfs/var/cache/apt\040archives rw - ext4 /dev/vda rw
104 22 0:53 / /work/rootfs2/proc rw - proc proc rw
105 22 0:54 / /work/rootfs rw - tmpfs tmpfs rw
`
	got, err := parseMountinfo(strings.NewReader(info), "/work/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"dev", "dev/pts", "proc", "var/cache/apt archives"}
	if !slices.Equal(keys, want) {
		t.Errorf("mount points = %q, want %q", keys, want)
	}
}

func TestMeasureTree(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a"), make([]byte, 1000))
	writeFile(t, filepath.Join(root, "boot", "k"), make([]byte, 5000))
	writeFile(t, filepath.Join(root, "skip", "big"), make([]byte, 100000))
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "a2")); err != nil {
		t.Fatal(err)
	}
	tree, err := measureTree(context.Background(), root, []string{"skip"}, map[string]bool{"boot": true})
	if err != nil {
		t.Fatal(err)
	}
	// a counted once (hard link), boot's contents and skip left out.
	if tree.bytes != 1000 {
		t.Errorf("bytes = %d, want 1000", tree.bytes)
	}
	if !slices.Equal(tree.mounts, []string{"boot"}) {
		t.Errorf("mounts = %q", tree.mounts)
	}
}

func TestCheckSuperblock(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, make([]byte, 4096))
	if err := checkSuperblock(junk, 4096); err == nil {
		t.Error("4 KiB of zeros passed the superblock check")
	}
}

func TestMakeSquashfs(t *testing.T) {
	needTools(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n"))
	writeFile(t, filepath.Join(root, "usr", "lib", "blob"), randomBytes(1536<<10))
	writeFile(t, filepath.Join(root, "var", "cache", "apt", "pkgcache.bin"), []byte("cache"))
	out := filepath.Join(dir, "filesystem.squashfs")
	err := MakeSquashfs(context.Background(), testLog(t), root, out, SquashfsOptions{Compression: "gzip", Exclude: []string{"var/cache/apt"}})
	if err != nil {
		t.Fatal(err)
	}
	list := output(t, "unsquashfs", "-l", out)
	for _, f := range []string{"squashfs-root/etc/hostname", "squashfs-root/usr/lib/blob", "squashfs-root/var/cache"} {
		if !strings.Contains(list, f+"\n") {
			t.Errorf("unsquashfs -l lacks %s:\n%s", f, list)
		}
	}
	if strings.Contains(list, "apt") {
		t.Errorf("excluded var/cache/apt is in the image:\n%s", list)
	}
	if s := output(t, "unsquashfs", "-s", out); !strings.Contains(s, "Compression gzip") {
		t.Errorf("not gzip:\n%s", s)
	}
}

func TestMakeSquashfsTooSmall(t *testing.T) {
	needTools(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n"))
	out := filepath.Join(dir, "filesystem.squashfs")
	err := MakeSquashfs(context.Background(), testLog(t), root, out, SquashfsOptions{})
	if err == nil {
		t.Fatal("a tiny squashfs passed")
	}
	for _, want := range []string{"under 1 MiB", "full disk"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("junk image left behind: %v", err)
	}
}

func TestMakeSquashfsBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.squashfs")
	if err := MakeSquashfs(context.Background(), testLog(t), dir, out, SquashfsOptions{Compression: "bzip2"}); err == nil || !strings.Contains(err.Error(), "xz, zstd") {
		t.Errorf("bad compression: %v", err)
	}
	if err := MakeSquashfs(context.Background(), testLog(t), filepath.Join(dir, "none"), out, SquashfsOptions{}); err == nil {
		t.Error("missing rootfs accepted")
	}
}

// The epoch makes the image a function of the tree: same tree, same bytes,
// however the files' own times differ.
func TestMakeSquashfsReproducible(t *testing.T) {
	needTools(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "usr", "lib", "blob"), randomBytes(1200<<10))
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n"))
	o := SquashfsOptions{Compression: "gzip", SourceDateEpoch: 1700000000}
	var images [][]byte
	for i, name := range []string{"a.squashfs", "b.squashfs"} {
		if i == 1 {
			writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n")) // new mtime
		}
		out := filepath.Join(dir, name)
		if err := MakeSquashfs(context.Background(), testLog(t), root, out, o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Error("two builds with the same epoch differ")
	}
}

// A mounted file system inside the rootfs (a leftover /proc) keeps its
// mount point in the image but not its contents.
func TestMakeSquashfsMountPoint(t *testing.T) {
	needTools(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "usr", "lib", "blob"), randomBytes(1200<<10))
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	privateTmpfs(t, filepath.Join(root, "proc"), "4m")
	writeFile(t, filepath.Join(root, "proc", "cpuinfo"), []byte("x"))
	writeFile(t, filepath.Join(root, "proc", ".hidden"), []byte("x"))
	// Commands started from this thread must see the mount, or the test
	// would pass without any mount to leave out.
	if ls := output(t, "ls", "-A", filepath.Join(root, "proc")); ls != ".hidden\ncpuinfo\n" {
		t.Fatalf("a child process does not see the tmpfs on proc: %q", ls)
	}
	out := filepath.Join(dir, "filesystem.squashfs")
	if err := MakeSquashfs(context.Background(), testLog(t), root, out, SquashfsOptions{Compression: "gzip"}); err != nil {
		t.Fatal(err)
	}
	list := output(t, "unsquashfs", "-l", out)
	if !strings.Contains(list, "squashfs-root/proc\n") {
		t.Errorf("mount point proc missing:\n%s", list)
	}
	if strings.Contains(list, "cpuinfo") || strings.Contains(list, "hidden") {
		t.Errorf("contents of the mounted proc are in the image:\n%s", list)
	}
}

// Not enough space: refused before mksquashfs runs, with both numbers.
func TestMakeSquashfsNoSpace(t *testing.T) {
	needTools(t, "mksquashfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "usr", "lib", "blob"), randomBytes(3<<20))
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	privateTmpfs(t, outDir, "1m")
	out := filepath.Join(outDir, "filesystem.squashfs")
	err := MakeSquashfs(context.Background(), testLog(t), root, out, SquashfsOptions{})
	if err == nil {
		t.Fatal("a 3 MiB tree was squashed onto a 1 MiB file system")
	}
	msg := err.Error()
	if !strings.Contains(msg, "not enough space") || !strings.Contains(msg, "3145728") || !strings.Contains(msg, "1048576 bytes) is free") {
		t.Errorf("error lacks the numbers: %v", err)
	}
	if names := dirNames(t, outDir); len(names) != 0 {
		t.Errorf("left in the output directory: %q", names)
	}
}

func TestSquashfsProgress(t *testing.T) {
	var term, file bytes.Buffer
	log := buildlog.New(&file, "log", &term)
	p := &squashfsProgress{log: log, lines: log.Writer(false)}
	for _, chunk := range []string{"Parallel mksquashfs: Using 2 processors\nCreating 4.0 filesystem on o.sqfs, block size 131072.\n",
		"\r[====\\      ] 1650/3300  50%", "\r[==========|] 3300/3300 100%\n\nFilesystem size 64473.91 Kbytes\n"} {
		p.Write([]byte(chunk))
	}
	if !strings.Contains(term.String(), "squashfs blocks compressed: 1650/3300") || !strings.Contains(term.String(), "3300/3300") {
		t.Errorf("the terminal shows %q", term.String())
	}
	if strings.Contains(file.String(), "[==") || !strings.Contains(file.String(), "Filesystem size 64473.91 Kbytes") || !strings.Contains(file.String(), "Creating 4.0 filesystem") {
		t.Errorf("the log has %q", file.String())
	}
}
