package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"vmdeb/internal/arch"
)

func TestPlatform(t *testing.T) {
	for deb, want := range map[string]string{
		"amd64": "amd64", "arm64": "arm64/v8", "armhf": "arm/v7", "armel": "arm/v5", "i386": "386",
		"ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
	} {
		p, ok := Platform(deb)
		got := p.Architecture
		if p.Variant != "" {
			got += "/" + p.Variant
		}
		if !ok || got != want || p.OS != "linux" {
			t.Errorf("Platform(%s) = %+v, %v; want %s on linux", deb, p, ok, want)
		}
	}
	// Every architecture vmdeb builds has one: an oci output of any of
	// them is possible.
	for _, n := range arch.Names() {
		if a, _ := arch.Lookup(n); !a.Supports(arch.OCI) {
			t.Errorf("%s does not list oci among its outputs", n)
		}
		if _, ok := Platform(n); !ok {
			t.Errorf("no OCI platform for %s", n)
		}
	}
	if _, ok := Platform("m68k"); ok {
		t.Error("Platform(m68k) is known")
	}
}

func TestRefs(t *testing.T) {
	for _, ok := range []string{"vmdeb", "vmdeb:1.0", "tools/vmdeb", "localhost/vmdeb:latest", "registry.example:5000/a/b_c__d-e:V1.0-rc_1", "a.b"} {
		if err := ValidRef(ok); err != nil {
			t.Errorf("ValidRef(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Vmdeb", "vmdeb:", ":1.0", "a//b", "vmdeb:a b", "-x", "x-", "a..b", "vmdeb@sha256:abc", "x:" + strings.Repeat("t", 129), strings.Repeat("n", 256)} {
		if err := ValidRef(bad); err == nil {
			t.Errorf("ValidRef(%q) accepted it", bad)
		}
	}
	for in, want := range map[string]string{"vmdeb": "vmdeb:latest", "vmdeb:1": "vmdeb:1", "host:5000/vmdeb": "host:5000/vmdeb:latest", "host:5000/vmdeb:2": "host:5000/vmdeb:2"} {
		if got := FullRef(in); got != want {
			t.Errorf("FullRef(%q) = %q, want %q", in, got, want)
		}
	}
	if ValidName("test+image") || !ValidName("debian-live-minimal") {
		t.Error("ValidName")
	}
}

const epoch = 1700000000

// tree makes a small root file system: directories, files, a link, a
// hard link, a fifo, /dev with a node-like file, dates after epoch.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc/apt/apt.conf.d", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "var/empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, data string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/hostname", "tiny\n", 0o644)
	write("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640)
	write("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	write("dev/null-ish", "not for the layer", 0o644)
	write("proc/cpuinfo", "not for the layer", 0o644)
	if err := os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "tmp/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	unix.Chmod(filepath.Join(root, "tmp"), 0o1777)
	late := time.Unix(epoch+1000, 0)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error {
		os.Lchown(p, 0, 0)
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(late.UnixNano()), unix.NsecToTimeval(late.UnixNano())})
	})
	return root
}

// layer writes root's layer and returns its bytes and description.
func layer(t *testing.T, root string) ([]byte, Layer) {
	t.Helper()
	var b bytes.Buffer
	l, err := WriteLayer(context.Background(), root, &b, LayerOptions{Epoch: epoch, Add: ContainerFiles})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), l
}

func sum(b []byte) digest.Digest {
	h := sha256.Sum256(b)
	return digest.Digest("sha256:" + hex.EncodeToString(h[:]))
}

func readTar(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hs []*tar.Header
	data := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		hs = append(hs, h)
		data[h.Name] = b
	}
}

// TestLayer: the layer is the tree in name order, without /dev's, /proc's
// and /sys's contents, with the container files added, hard links and
// links kept, dates clamped to the epoch; its digests are right and two
// writes give the same bytes.
func TestLayer(t *testing.T) {
	root := tree(t)
	xattr := unix.Lsetxattr(filepath.Join(root, "usr/bin/tool"), "user.vmdeb", []byte("a\x00b"), 0) == nil
	gz, l := layer(t, root)
	gz2, l2 := layer(t, root)
	if !bytes.Equal(gz, gz2) || l != l2 {
		t.Fatalf("two layers of one tree differ: %v %v", l, l2)
	}
	if l.Digest != sum(gz) || l.Size != int64(len(gz)) {
		t.Errorf("layer digest %s size %d; the bytes are %s, %d", l.Digest, l.Size, sum(gz), len(gz))
	}
	if gz[3] != 0 || !bytes.Equal(gz[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("the gzip header has a name or a date: % x", gz[:10])
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if l.DiffID != sum(raw) {
		t.Errorf("DiffID %s, the tar's digest %s", l.DiffID, sum(raw))
	}
	hs, data := readTar(t, bytes.NewReader(raw))
	var names []string
	by := map[string]*tar.Header{}
	for _, h := range hs {
		names = append(names, h.Name)
		by[h.Name] = h
		if h.ModTime.Unix() > epoch {
			t.Errorf("%s is dated %v, after SOURCE_DATE_EPOCH", h.Name, h.ModTime)
		}
		if strings.HasPrefix(h.Name, "./") || strings.HasPrefix(h.Name, "/") {
			t.Errorf("entry name %q", h.Name)
		}
	}
	want := []string{"bin", "dev/", "etc/", "etc/apt/", "etc/apt/apt.conf.d/", "etc/apt/apt.conf.d/docker-clean",
		"etc/hostname", "etc/shadow", "proc/", "sys/", "tmp/", "tmp/fifo", "usr/", "usr/bin/", "usr/bin/tool", "usr/bin/tool2",
		"usr/sbin/", "usr/sbin/policy-rc.d", "var/", "var/empty/"}
	if !slices.Equal(names, want) {
		t.Errorf("entries:\n%v\nwant\n%v", names, want)
	}
	if h := by["bin"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Errorf("bin: %+v", h)
	}
	if h := by["usr/bin/tool2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/tool" {
		t.Errorf("the hard link: %+v", h)
	}
	if h := by["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
	if h := by["etc/shadow"]; h == nil || h.Mode != 0o640 || string(data["etc/shadow"]) != "root:*:19000:0:99999:7:::\n" {
		t.Errorf("etc/shadow: %+v %q", h, data["etc/shadow"])
	}
	if h := by["usr/sbin/policy-rc.d"]; h == nil || h.Mode != 0o755 || !strings.Contains(string(data[h.Name]), "exit 101") || h.ModTime.Unix() != epoch {
		t.Errorf("policy-rc.d: %+v", h)
	}
	if xattr && by["usr/bin/tool"].PAXRecords["SCHILY.xattr.user.vmdeb"] != "a\x00b" {
		t.Errorf("the extended attribute is not in the layer: %v", by["usr/bin/tool"].PAXRecords)
	}

	// A file the image has wins over the one vmdeb adds.
	os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	gz, _ = layer(t, root)
	zr, _ = gzip.NewReader(bytes.NewReader(gz))
	hs, data = readTar(t, zr)
	n := 0
	for _, h := range hs {
		if h.Name == "usr/sbin/policy-rc.d" {
			n++
		}
	}
	if n != 1 || string(data["usr/sbin/policy-rc.d"]) != "#!/bin/sh\nexit 0\n" {
		t.Errorf("the image's own policy-rc.d: %d entries, %q", n, data["usr/sbin/policy-rc.d"])
	}

	// A whiteout name cannot be in an image.
	os.WriteFile(filepath.Join(root, "etc/.wh.passwd"), nil, 0o644)
	if _, err := WriteLayer(context.Background(), root, io.Discard, LayerOptions{}); err == nil || !strings.Contains(err.Error(), "/etc/.wh.passwd: a name starting with .wh.") {
		t.Errorf("a whiteout name: %v", err)
	}
}

func testConfig() Config {
	return Config{Ref: "tiny", Arch: "arm64", Created: time.Unix(epoch, 0), Env: []string{"LANG=C.UTF-8"},
		Labels: map[string]string{"b": "2", "a": "1"}, CreatedBy: "vmdeb test"}
}

// TestDescribe: the config, manifest and index are what the
// specification asks, each pointing at the other by its true digest, the
// same bytes every time.
func TestDescribe(t *testing.T) {
	l := Layer{Digest: sum([]byte("gz")), DiffID: sum([]byte("tar")), Size: 2}
	im, err := Describe(testConfig(), l)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Describe(testConfig(), l)
	if !bytes.Equal(im.Config.Data, again.Config.Data) || !bytes.Equal(im.Manifest.Data, again.Manifest.Data) || !bytes.Equal(im.Index, again.Index) {
		t.Error("two descriptions of one image differ")
	}
	var cfg v1.Image
	if err := json.Unmarshal(im.Config.Data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" || cfg.Variant != "v8" || cfg.OS != "linux" || !cfg.Created.Equal(time.Unix(epoch, 0)) ||
		!slices.Equal(cfg.Config.Cmd, DefaultCmd) || !slices.Equal(cfg.Config.Env, []string{DefaultPath, "LANG=C.UTF-8"}) ||
		cfg.Config.Labels["a"] != "1" || cfg.RootFS.Type != "layers" || !slices.Equal(cfg.RootFS.DiffIDs, []digest.Digest{l.DiffID}) ||
		len(cfg.History) != 1 || cfg.History[0].CreatedBy != "vmdeb test" {
		t.Errorf("image config: %s", im.Config.Data)
	}
	if !strings.Contains(string(im.Config.Data), `"created":"2023-11-14T22:13:20Z"`) {
		t.Errorf("created is not SOURCE_DATE_EPOCH in UTC: %s", im.Config.Data)
	}
	if im.Config.Desc.Digest != sum(im.Config.Data) || im.Config.Desc.Size != int64(len(im.Config.Data)) {
		t.Error("the config's descriptor")
	}
	var man v1.Manifest
	if err := json.Unmarshal(im.Manifest.Data, &man); err != nil {
		t.Fatal(err)
	}
	if man.SchemaVersion != 2 || man.MediaType != v1.MediaTypeImageManifest || man.Config.Digest != im.Config.Desc.Digest ||
		man.Config.MediaType != v1.MediaTypeImageConfig || len(man.Layers) != 1 || man.Layers[0].Digest != l.Digest ||
		man.Layers[0].MediaType != v1.MediaTypeImageLayerGzip || man.Layers[0].Size != 2 {
		t.Errorf("manifest: %s", im.Manifest.Data)
	}
	var idx v1.Index
	if err := json.Unmarshal(im.Index, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sum(im.Manifest.Data) || idx.Manifests[0].Annotations[v1.AnnotationRefName] != "tiny:latest" ||
		idx.Manifests[0].Platform == nil || idx.Manifests[0].Platform.Architecture != "arm64" {
		t.Errorf("index: %s", im.Index)
	}
	wantDocker := `[{"Config":"blobs/sha256/` + im.Config.Desc.Digest.Encoded() + `","RepoTags":["tiny:latest"],"Layers":["blobs/sha256/` + l.Digest.Encoded() + `"]}]`
	if string(im.DockerManifest) != wantDocker {
		t.Errorf("manifest.json: %s\nwant %s", im.DockerManifest, wantDocker)
	}

	// An entrypoint without cmd: no default command after it.
	c := testConfig()
	c.Entrypoint, c.Env = []string{"/usr/local/bin/vmdeb"}, []string{"PATH=/x"}
	im, _ = Describe(c, l)
	cfg = v1.Image{}
	json.Unmarshal(im.Config.Data, &cfg)
	if len(cfg.Config.Cmd) != 0 || !slices.Equal(cfg.Config.Env, []string{"PATH=/x"}) {
		t.Errorf("entrypoint only: %s", im.Config.Data)
	}
	c.Arch = "m68k"
	if _, err := Describe(c, l); err == nil {
		t.Error("an architecture without a platform was described")
	}
}

// archive writes the image of root as an archive file.
func archive(t *testing.T, root string) string {
	t.Helper()
	gz, l := layer(t, root)
	im, err := Describe(testConfig(), l)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tiny.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(f, im, bytes.NewReader(gz), time.Unix(epoch, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchive: the archive is an OCI image layout whose blobs are named by
// their digests, with Docker's manifest.json, sorted; the same bytes twice.
func TestArchive(t *testing.T) {
	root := tree(t)
	p, q := archive(t, root), archive(t, root)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(q)
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of one tree differ")
	}
	hs, data := readTar(t, bytes.NewReader(a))
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
		if h.ModTime.Unix() != epoch || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %v %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		if d, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok && d != "" && sum(data[h.Name]).Encoded() != d {
			t.Errorf("%s holds %s", h.Name, sum(data[h.Name]))
		}
	}
	if !slices.IsSorted(names) || len(names) != 8 || names[0] != "blobs/" || names[len(names)-1] != "oci-layout" {
		t.Errorf("entries: %v", names)
	}
	if string(data["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %s", data["oci-layout"])
	}
	var idx v1.Index
	if err := json.Unmarshal(data["index.json"], &idx); err != nil || len(idx.Manifests) != 1 || data["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()] == nil {
		t.Errorf("index.json %s: %v", data["index.json"], err)
	}
}

// TestToolsReadArchive: skopeo reads the archive both as an OCI archive
// and as a Docker archive, and umoci unpacks its layout into a bundle
// whose root file system is the tree (each skipped where the tool is not
// installed: make deps installs them).
func TestToolsReadArchive(t *testing.T) {
	root := tree(t)
	p := archive(t, root)
	t.Run("skopeo", func(t *testing.T) {
		if _, err := exec.LookPath("skopeo"); err != nil {
			t.Skip("skopeo is not installed")
		}
		for _, ref := range []string{"oci-archive:" + p, "docker-archive:" + p} {
			out, err := exec.Command("skopeo", "inspect", "--raw", ref).CombinedOutput()
			if err != nil {
				t.Errorf("skopeo inspect --raw %s: %v\n%s", ref, err, out)
				continue
			}
			out, err = exec.Command("skopeo", "inspect", "--config", ref).CombinedOutput()
			var cfg v1.Image
			if err != nil || json.Unmarshal(out, &cfg) != nil || cfg.Architecture != "arm64" || cfg.Variant != "v8" || len(cfg.RootFS.DiffIDs) != 1 {
				t.Errorf("skopeo inspect --config %s: %v\n%s", ref, err, out)
			}
		}
	})
	t.Run("umoci", func(t *testing.T) {
		if _, err := exec.LookPath("umoci"); err != nil {
			t.Skip("umoci is not installed")
		}
		layout := filepath.Join(t.TempDir(), "layout")
		os.Mkdir(layout, 0o755)
		if out, err := exec.Command("tar", "-xf", p, "-C", layout).CombinedOutput(); err != nil {
			t.Fatalf("tar -xf: %v\n%s", err, out)
		}
		bundle := filepath.Join(t.TempDir(), "bundle")
		args := []string{"unpack", "--image", layout + ":tiny:latest", bundle}
		if os.Geteuid() != 0 {
			args = slices.Insert(args, 1, "--rootless")
		}
		if out, err := exec.Command("umoci", args...).CombinedOutput(); err != nil {
			t.Fatalf("umoci %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		got, err := os.ReadFile(filepath.Join(bundle, "rootfs/etc/hostname"))
		if err != nil || string(got) != "tiny\n" {
			t.Errorf("the unpacked image's /etc/hostname: %q %v", got, err)
		}
		if l, _ := os.Readlink(filepath.Join(bundle, "rootfs/bin")); l != "usr/bin" {
			t.Errorf("the unpacked image's /bin: %q", l)
		}
		var a, b unix.Stat_t
		if unix.Stat(filepath.Join(bundle, "rootfs/usr/bin/tool"), &a) != nil || unix.Stat(filepath.Join(bundle, "rootfs/usr/bin/tool2"), &b) != nil || a.Ino != b.Ino {
			t.Error("the hard link did not survive")
		}
		if _, err := os.Stat(filepath.Join(bundle, "rootfs/proc/cpuinfo")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/proc/cpuinfo of the tree is in the image: %v", err)
		}
		cfg, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
		if !strings.Contains(string(cfg), `"/bin/bash"`) || !strings.Contains(string(cfg), "LANG=C.UTF-8") {
			t.Errorf("the runtime config umoci made lacks the image's command and environment:\n%s", cfg)
		}
	})
}
