package shell

import (
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, p string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetect(t *testing.T) {
	d := t.TempDir()
	root := filepath.Join(d, "root")
	for _, s := range []string{"usr", "etc"} {
		os.MkdirAll(filepath.Join(root, s), 0o755)
	}
	tarHdr := make([]byte, 1024)
	copy(tarHdr[257:], "ustar")
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	iso := make([]byte, 40000)
	copy(iso[32769:], "CD001")
	copy(iso[510:], []byte{0x55, 0xaa}) // a hybrid ISO has an MBR too
	sqdir := filepath.Join(d, "sq")
	write(t, filepath.Join(sqdir, "filesystem.squashfs"), []byte("hsqs...."))
	cases := []struct {
		path string
		want Kind
	}{
		{root, Directory},
		{write(t, filepath.Join(d, "a.tar"), tarHdr), Tarball},
		{write(t, filepath.Join(d, "a.tar.gz"), []byte{0x1f, 0x8b, 8, 0}), Tarball},
		{write(t, filepath.Join(d, "a.tar.zst"), []byte{0x28, 0xb5, 0x2f, 0xfd, 0}), Tarball},
		{write(t, filepath.Join(d, "a.tar.xz"), []byte("\xfd7zXZ\x00\x00")), Tarball},
		{write(t, filepath.Join(d, "fs.squashfs"), []byte("hsqs\x00\x00")), Squashfs},
		{sqdir, Squashfs},
		{write(t, filepath.Join(d, "live.iso"), iso), ISO},
		{write(t, filepath.Join(d, "disk.img"), mbr), Raw},
		{write(t, filepath.Join(d, "disk.qcow2"), []byte("QFI\xfb\x00\x00\x00\x03")), Qcow2},
	}
	for _, c := range cases {
		got, err := Detect(c.path, "")
		if err != nil || got.Kind != c.want {
			t.Errorf("Detect(%s) = %q, %v; want %q", c.path, got.Kind, err, c.want)
		}
		if err == nil && !filepath.IsAbs(got.Path) {
			t.Errorf("Detect(%s): path %q is not absolute", c.path, got.Path)
		}
	}
	if got, _ := Detect(sqdir, ""); got.Path != filepath.Join(sqdir, "filesystem.squashfs") {
		t.Errorf("a squashfs output's directory opens %q, want its filesystem.squashfs", got.Path)
	}
}

func TestDetectRefusals(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "notroot", "usr"), 0o755)
	cases := []struct {
		path string
		want []string
	}{
		{filepath.Join(d, "notroot"), []string{"not a root file system", "no etc/", "a config file"}},
		{write(t, filepath.Join(d, "notes.txt"), []byte("hello, world")), []string{"not an image vmdeb knows", "qcow2"}},
		{write(t, filepath.Join(d, "x.gz"), []byte{0x1f, 0x8b, 8, 0}), []string{"compressed file but not a tarball"}},
		{filepath.Join(d, "missing.img"), []string{"no such file"}},
	}
	for _, c := range cases {
		_, err := Detect(c.path, "")
		if err == nil {
			t.Errorf("Detect(%s): no error", c.path)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Detect(%s): %q does not say %q", c.path, err, w)
			}
		}
	}
}

func TestDetectConfig(t *testing.T) {
	d := t.TempDir()
	cfg := write(t, filepath.Join(d, "c.yaml"), []byte("name: c\nsuite: trixie\narchitecture: amd64\nkernel: none\noutputs:\n  - {type: tarball, path: out/c.tar.gz}\n  - {type: directory, path: out/root}\n"))
	_, err := Detect(cfg, "")
	if err == nil || !strings.Contains(err.Error(), "not built yet") || !strings.Contains(err.Error(), "vmdeb build") {
		t.Errorf("an unbuilt config: %v, want 'not built yet'", err)
	}
	write(t, filepath.Join(d, "out", "c.tar.gz"), []byte{0x1f, 0x8b, 8, 0})
	got, err := Detect(cfg, "")
	if err != nil || got.Kind != Tarball || got.Path != filepath.Join(d, "out", "c.tar.gz") || got.Config != cfg {
		t.Errorf("a built config: %+v, %v; want its first output, the tarball", got, err)
	}
	other := filepath.Join(d, "elsewhere")
	write(t, filepath.Join(other, "c.tar.gz"), []byte{0x1f, 0x8b, 8, 0})
	if got, err := Detect(cfg, other); err != nil || got.Path != filepath.Join(other, "c.tar.gz") {
		t.Errorf("a config built with --outdir: %+v, %v; want the output there", got, err)
	}
}

func TestCheckWritable(t *testing.T) {
	for _, k := range []Kind{Directory, Raw, Qcow2} {
		if err := (Target{Kind: k, Path: "/x"}).CheckWritable(); err != nil {
			t.Errorf("--writable on a %s: %v", k, err)
		}
	}
	for _, k := range []Kind{Tarball, Squashfs, ISO} {
		err := (Target{Kind: k, Path: "/x"}).CheckWritable()
		if err == nil || !strings.Contains(err.Error(), string(k)) || !strings.Contains(err.Error(), "directory output or a raw or qcow2 disk image") {
			t.Errorf("--writable on a %s: %v, want a refusal naming it and what is valid", k, err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	if got := CommandLine("/s/root", nil, "/bin/bash"); !slices.Equal(got, []string{"chroot", "/s/root", "/bin/bash", "-l"}) {
		t.Errorf("no command: %q, want a login shell", got)
	}
	got := CommandLine("/s/root", []string{"dpkg", "-l", "sudo"}, "/bin/sh")
	if !slices.Equal(got, []string{"chroot", "/s/root", "dpkg", "-l", "sudo"}) {
		t.Errorf("a command: %q", got)
	}
	env := Environ("xterm", "/bin/bash")
	for _, w := range []string{"HOME=/root", "TERM=xterm", "SHELL=/bin/bash"} {
		if !slices.Contains(env, w) {
			t.Errorf("environment %q lacks %s", env, w)
		}
	}
	if slices.ContainsFunc(Environ("", "/bin/sh"), func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		t.Error("TERM set without a terminal")
	}
}

func TestQSDArgs(t *testing.T) {
	a := QSDArgs("/img/a,b.qcow2", "/s/disk.raw", false)
	if len(a) != 6 || a[0] != "--blockdev" || a[4] != "--export" {
		t.Fatalf("%q", a)
	}
	var file, export map[string]any
	json.Unmarshal([]byte(a[1]), &file)
	json.Unmarshal([]byte(a[5]), &export)
	if file["filename"] != "/img/a,b.qcow2" || file["read-only"] != true {
		t.Errorf("file node %v: the name must pass unescaped, read-only", file)
	}
	if export["type"] != "fuse" || export["mountpoint"] != "/s/disk.raw" || export["writable"] != false {
		t.Errorf("export %v", export)
	}
	json.Unmarshal([]byte(QSDArgs("/i.qcow2", "/r", true)[5]), &export)
	if export["writable"] != true {
		t.Errorf("--writable export %v", export)
	}
}

func TestRootPartition(t *testing.T) {
	gpt := `{"partitiontable":{"label":"gpt","unit":"sectors","sectorsize":512,"partitions":[
	 {"node":"d1","start":2048,"size":2048,"type":"21686148-6449-6E6F-744E-656564454649","name":"bios"},
	 {"node":"d2","start":4096,"size":262144,"type":"C12A7328-F81F-11D2-BA4B-00A0C93EC93B","name":"esp"},
	 {"node":"d3","start":266240,"size":5000000,"type":"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709","name":"root"},
	 {"node":"d4","start":5266240,"size":1000,"type":"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F","name":"swap"}]}}`
	p, err := RootPartition([]byte(gpt))
	if err != nil || p.Offset != 266240*512 || p.Size != 5000000*512 {
		t.Errorf("GPT: %+v, %v; want the partition named root", p, err)
	}
	mbr := `{"partitiontable":{"label":"dos","unit":"sectors","sectorsize":512,"partitions":[
	 {"node":"d1","start":2048,"size":100,"type":"ef"},
	 {"node":"d2","start":4096,"size":200,"type":"83","bootable":true},
	 {"node":"d3","start":8192,"size":300,"type":"82"},
	 {"node":"d4","start":16384,"size":400,"type":"83"}]}}`
	p, err = RootPartition([]byte(mbr))
	if err != nil || p.Offset != 16384*512 || p.Size != 400*512 {
		t.Errorf("MBR with a /boot: %+v, %v; want the last Linux partition", p, err)
	}
	if _, err := RootPartition([]byte(`{"partitiontable":{"label":"dos","partitions":[{"start":2048,"size":1,"type":"ef"}]}}`)); err == nil {
		t.Error("only an ESP: no error")
	}
}

func TestParseLBA(t *testing.T) {
	out := "Report layout: xt , Startlba ,   Blocks , Filesize , ISO image path\nFile data lba:  0 ,     3767 ,   113454 , 232353792 , '/live/filesystem.squashfs'\n"
	off, size, err := ParseLBA([]byte(out), "x.iso", "/live/filesystem.squashfs")
	if err != nil || off != 3767*2048 || size != 232353792 {
		t.Errorf("ParseLBA = %d, %d, %v", off, size, err)
	}
	if _, _, err := ParseLBA([]byte("Report layout: xt , Startlba\n"), "x.iso", "/live/filesystem.squashfs"); err == nil || !strings.Contains(err.Error(), "live ISO") {
		t.Errorf("no squashfs in the ISO: %v", err)
	}
}

func TestArchOf(t *testing.T) {
	for m, want := range map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "i386", elf.EM_RISCV: "riscv64"} {
		a, err := archOf(m, elf.ELFCLASS64)
		if err != nil || a.Name != want {
			t.Errorf("archOf(%s) = %q, %v; want %s", m, a.Name, err, want)
		}
	}
	if _, err := archOf(elf.EM_MIPS, elf.ELFCLASS32); err == nil {
		t.Error("an unknown machine: no error")
	}
}
