package publish

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vmdeb/internal/report"
)

// The fixtures are small fake jobs: real ISO, tarball and squashfs files
// (their file lists are read with the real tools), fake disk images, and
// hand-written reports whose paths are where a build machine wrote them
// (publish finds the files by name in the job's directory).

const buildDir = "/srv/ci/builds/out" // the reports' paths: not on this machine

type fakeOutput struct {
	typ, name string
	data      []byte // for a squashfs: filesystem.squashfs's
}

type fakeJob struct {
	id, arch string
	outputs  []fakeOutput
	plan     string   // plan_sha256
	planJobs []string // default: the fixture's job ids
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps)", tool)
		}
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func size(n int) *int64 {
	s := int64(n)
	return &s
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// isoImage is a small ISO 9660 image holding files.
func isoImage(t *testing.T, files map[string]string) []byte {
	t.Helper()
	need(t, "xorriso")
	src := t.TempDir()
	for n, c := range files {
		write(t, filepath.Join(src, n), []byte(c))
	}
	out := filepath.Join(t.TempDir(), "x.iso")
	if b, err := exec.Command("xorriso", "-outdev", out, "-map", src, "/", "-commit").CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func squashfsImage(t *testing.T, files map[string]string) []byte {
	t.Helper()
	need(t, "mksquashfs", "unsquashfs")
	src := t.TempDir()
	for n, c := range files {
		write(t, filepath.Join(src, n), []byte(c))
	}
	out := filepath.Join(t.TempDir(), "x.sq")
	if b, err := exec.Command("mksquashfs", src, out, "-quiet", "-noappend").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tarball(t *testing.T, files ...string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range files {
		if strings.HasSuffix(n, "/") {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(n))})
		tw.Write([]byte(n))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// makeJob writes a job's directory: its outputs, manifests, SBOMs, log,
// SHA256SUMS and its report, as vmdeb build --job writes them.
func makeJob(t *testing.T, root string, j fakeJob, allIDs []string) string {
	t.Helper()
	dir := filepath.Join(root, j.id)
	if j.plan == "" {
		j.plan = strings.Repeat("ab", 32)
	}
	if j.planJobs == nil {
		j.planJobs = allIDs
	}
	manifest := []byte("base-files\t13.8\nlinux-image-" + j.arch + "\t6.12\n")
	doc := report.Build{SchemaVersion: 1, Kind: "build", VmdebVersion: "test", ConfigFile: "/srv/ci/" + j.id + ".yaml",
		OK: true, Stages: []report.Stage{}, Outputs: []report.File{}, Log: buildDir + "/" + j.id + ".build.log",
		Plan: &report.Plan{Architecture: j.arch, Suite: "trixie"},
		Job:  &report.JobRef{ID: j.id, PlanSHA256: j.plan, PlanJobs: j.planJobs}}
	add := func(typ, name string, data []byte) {
		write(t, filepath.Join(dir, name), data)
		doc.Outputs = append(doc.Outputs, report.File{Type: typ, Path: buildDir + "/" + name, Size: size(len(data)), SHA256: sum(data)})
	}
	for _, o := range j.outputs {
		switch o.typ {
		case "directory":
			write(t, filepath.Join(dir, o.name, "etc/hostname"), []byte("debian\n"))
			doc.Outputs = append(doc.Outputs, report.File{Type: "directory", Path: buildDir + "/" + o.name})
		case "squashfs":
			f := report.File{Type: "squashfs", Path: buildDir + "/" + o.name, Files: []report.File{}}
			var sums []string
			for _, p := range []struct {
				name string
				data []byte
			}{{"filesystem.squashfs", o.data}, {"vmlinuz", []byte("kernel")}, {"initrd.img", []byte("initrd")},
				{"filesystem.packages", manifest}, {"filesystem.spdx.json", []byte(`{"spdx":1}`)}, {"filesystem.cdx.json", []byte(`{"cdx":1}`)}} {
				write(t, filepath.Join(dir, o.name, p.name), p.data)
				if !strings.HasSuffix(p.name, ".json") {
					f.Files = append(f.Files, report.File{Type: "file", Path: f.Path + "/" + p.name, Size: size(len(p.data)), SHA256: sum(p.data)})
				}
				sums = append(sums, sum(p.data)+"  "+p.name)
			}
			sort.Strings(sums)
			write(t, filepath.Join(dir, o.name, "SHA256SUMS"), []byte(strings.Join(sums, "\n")+"\n"))
			doc.Outputs = append(doc.Outputs, f)
		default:
			add(o.typ, o.name, o.data)
			s := stem(o.name, nil)
			if _, err := os.Stat(filepath.Join(dir, s+".packages")); err != nil {
				add("manifest", s+".packages", manifest)
				add("sbom-spdx", s+".spdx.json", []byte(`{"spdxVersion":"SPDX-2.3","name":"`+s+`"}`))
				add("sbom-cyclonedx", s+".cdx.json", []byte(`{"bomFormat":"CycloneDX","name":"`+s+`"}`))
			}
		}
	}
	write(t, filepath.Join(dir, j.id+".build.log"), []byte("==> bootstrap\n==> done "+j.id+"\n"))
	writeReport(t, filepath.Join(dir, j.id+".report.json"), &doc)
	return dir
}

func writeReport(t *testing.T, p string, doc *report.Build) {
	t.Helper()
	data, err := report.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, data)
}

func readReport(t *testing.T, p string) *report.Build {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc report.Build
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

func makeJobs(t *testing.T, jobs []fakeJob) (root string, dirs []string) {
	root = t.TempDir()
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.id)
	}
	for _, j := range jobs {
		dirs = append(dirs, makeJob(t, root, j, ids))
	}
	return root, dirs
}

// treeFiles lists the files below dir, relative, sorted.
func treeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var l []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			l = append(l, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(l)
	return l
}

// Several types on two architectures: the tree has each output in its
// section beside its manifest, SBOMs, file list and log, and checksum
// files that sha256sum -c and sha512sum -c accept.
func TestPublishTree(t *testing.T) {
	iso := isoImage(t, map[string]string{"live/vmlinuz": "k", "boot/grub/grub.cfg": "menu", "a b/it's": "q"})
	isoArm := isoImage(t, map[string]string{"live/vmlinuz": "arm"})
	sq := squashfsImage(t, map[string]string{"etc/hostname": "debian", "usr/bin/true": "x"})
	root, dirs := makeJobs(t, []fakeJob{
		{id: "live-xfce-amd64", arch: "amd64", outputs: []fakeOutput{
			{"live-iso", "debian-live-trixie-amd64-xfce.iso", iso},
			{"tarball", "rootfs-amd64.tar.gz", tarball(t, "./", "./etc/", "./etc/hostname")},
		}},
		{id: "live-xfce-arm64", arch: "arm64", outputs: []fakeOutput{{"live-iso", "debian-live-trixie-arm64-xfce.iso", isoArm}}},
		{id: "cloud-amd64", arch: "amd64", outputs: []fakeOutput{
			{"disk", "debian-trixie-amd64.img", []byte("raw disk")},
			{"disk", "debian-trixie-amd64.qcow2", []byte("QFI\xfb qcow2")},
			{"ext4", "root-amd64.ext4", []byte("ext4 fs")},
			{"oci", "container-amd64.oci.tar", []byte("an output type publish does not know")},
		}},
		{id: "netboot-amd64", arch: "amd64", outputs: []fakeOutput{{"squashfs", "netboot", sq}, {"directory", "rootdir", nil}}},
	})
	// Tarballs are 0600 unless the config says otherwise: published so,
	// with a note.
	if err := os.Chmod(filepath.Join(dirs[0], "rootfs-amd64.tar.gz"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A job directory without its log: published without it.
	if err := os.Remove(filepath.Join(dirs[2], "cloud-amd64.build.log")); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(root, "release")
	var progress bytes.Buffer
	s, err := Publish(context.Background(), Options{Dirs: dirs, To: to, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"amd64/disk/SHA256SUMS", "amd64/disk/SHA512SUMS",
		"amd64/disk/debian-trixie-amd64.cdx.json", "amd64/disk/debian-trixie-amd64.img",
		"amd64/disk/debian-trixie-amd64.packages", "amd64/disk/debian-trixie-amd64.qcow2", "amd64/disk/debian-trixie-amd64.spdx.json",
		"amd64/ext4/SHA256SUMS", "amd64/ext4/SHA512SUMS",
		"amd64/ext4/root-amd64.cdx.json", "amd64/ext4/root-amd64.ext4", "amd64/ext4/root-amd64.packages", "amd64/ext4/root-amd64.spdx.json",
		"amd64/iso-hybrid/SHA256SUMS", "amd64/iso-hybrid/SHA512SUMS",
		"amd64/iso-hybrid/debian-live-trixie-amd64-xfce.cdx.json", "amd64/iso-hybrid/debian-live-trixie-amd64-xfce.contents",
		"amd64/iso-hybrid/debian-live-trixie-amd64-xfce.iso", "amd64/iso-hybrid/debian-live-trixie-amd64-xfce.log",
		"amd64/iso-hybrid/debian-live-trixie-amd64-xfce.packages", "amd64/iso-hybrid/debian-live-trixie-amd64-xfce.spdx.json",
		"amd64/oci/SHA256SUMS", "amd64/oci/SHA512SUMS",
		"amd64/oci/container-amd64.oci.cdx.json", "amd64/oci/container-amd64.oci.packages",
		"amd64/oci/container-amd64.oci.spdx.json", "amd64/oci/container-amd64.oci.tar",
		"amd64/tarball/SHA256SUMS", "amd64/tarball/SHA512SUMS",
		"amd64/tarball/rootfs-amd64.cdx.json", "amd64/tarball/rootfs-amd64.contents", "amd64/tarball/rootfs-amd64.log",
		"amd64/tarball/rootfs-amd64.packages", "amd64/tarball/rootfs-amd64.spdx.json", "amd64/tarball/rootfs-amd64.tar.gz",
		"amd64/webboot/SHA256SUMS", "amd64/webboot/SHA512SUMS",
		"amd64/webboot/netboot.cdx.json", "amd64/webboot/netboot.contents", "amd64/webboot/netboot.initrd.img", "amd64/webboot/netboot.log",
		"amd64/webboot/netboot.packages", "amd64/webboot/netboot.spdx.json", "amd64/webboot/netboot.squashfs", "amd64/webboot/netboot.vmlinuz",
		"arm64/iso-hybrid/SHA256SUMS", "arm64/iso-hybrid/SHA512SUMS",
		"arm64/iso-hybrid/debian-live-trixie-arm64-xfce.cdx.json", "arm64/iso-hybrid/debian-live-trixie-arm64-xfce.contents",
		"arm64/iso-hybrid/debian-live-trixie-arm64-xfce.iso", "arm64/iso-hybrid/debian-live-trixie-arm64-xfce.log",
		"arm64/iso-hybrid/debian-live-trixie-arm64-xfce.packages", "arm64/iso-hybrid/debian-live-trixie-arm64-xfce.spdx.json",
	}
	if got := treeFiles(t, to); !slices.Equal(got, want) {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Nothing left beside the tree.
	if ents, _ := os.ReadDir(root); len(ents) != len(dirs)+1 {
		t.Errorf("%d entries beside the tree, want the %d job directories and the tree", len(ents), len(dirs))
	}
	// The outputs are the jobs' files, linked.
	for rel, src := range map[string]string{
		"amd64/iso-hybrid/debian-live-trixie-amd64-xfce.iso": "live-xfce-amd64/debian-live-trixie-amd64-xfce.iso",
		"amd64/webboot/netboot.squashfs":                     "netboot-amd64/netboot/filesystem.squashfs",
		"amd64/webboot/netboot.packages":                     "netboot-amd64/netboot/filesystem.packages",
		"amd64/webboot/netboot.log":                          "netboot-amd64/netboot-amd64.build.log",
	} {
		a, _ := os.Stat(filepath.Join(to, rel))
		b, _ := os.Stat(filepath.Join(root, src))
		if a == nil || b == nil || !os.SameFile(a, b) {
			t.Errorf("%s is not a hard link to %s", rel, src)
		}
	}
	for rel, want := range map[string]string{
		"amd64/iso-hybrid/debian-live-trixie-amd64-xfce.contents": "/a b/it's\n/boot/grub/grub.cfg\n/live/vmlinuz\n",
		"amd64/tarball/rootfs-amd64.contents":                     "./\n./etc/\n./etc/hostname\n",
		"amd64/webboot/netboot.contents":                          "/etc/hostname\n/usr/bin/true\n",
	} {
		if got, _ := os.ReadFile(filepath.Join(to, rel)); string(got) != want {
			t.Errorf("%s = %q, want %q", rel, got, want)
		}
	}
	// The checksum files: sorted, as sha256sum writes them, every file
	// of the directory but themselves.
	sums, _ := os.ReadFile(filepath.Join(to, "amd64/disk/SHA256SUMS"))
	wantSums := sum([]byte(`{"bomFormat":"CycloneDX","name":"debian-trixie-amd64"}`)) + "  debian-trixie-amd64.cdx.json\n" +
		sum([]byte("raw disk")) + "  debian-trixie-amd64.img\n"
	if !strings.HasPrefix(string(sums), wantSums) || strings.Count(string(sums), "\n") != 5 {
		t.Errorf("amd64/disk/SHA256SUMS:\n%s", sums)
	}
	for _, d := range []string{"amd64/disk", "amd64/ext4", "amd64/oci", "amd64/iso-hybrid", "amd64/tarball", "amd64/webboot", "arm64/iso-hybrid"} {
		for _, tool := range []string{"sha256sum", "sha512sum"} {
			cmd := exec.Command(tool, "--strict", "-c", strings.ToUpper(strings.TrimSuffix(tool, "sum"))+"SUMS")
			cmd.Dir = filepath.Join(to, d)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: %s -c: %v\n%s", d, tool, err, out)
			}
		}
	}
	// The summary.
	if s.To != to || len(s.Jobs) != 4 || len(s.Directories) != 7 || s.PlanSHA256 != strings.Repeat("ab", 32) {
		t.Errorf("summary: to %s, %d jobs, %d directories, plan %s", s.To, len(s.Jobs), len(s.Directories), s.PlanSHA256)
	}
	if len(s.Skipped) != 1 || s.Skipped[0].Type != "directory" || s.Skipped[0].Job != "netboot-amd64" {
		t.Errorf("skipped: %+v", s.Skipped)
	}
	byPath := map[string]File{}
	for _, f := range s.Files {
		byPath[f.Path] = f
	}
	if len(byPath) != len(want) {
		t.Errorf("the summary lists %d files, the tree has %d", len(byPath), len(want))
	}
	if f := byPath["amd64/iso-hybrid/debian-live-trixie-amd64-xfce.iso"]; f.Method != "link" || f.SHA256 != sum(iso) || f.Job != "live-xfce-amd64" || f.Type != "live-iso" || len(f.SHA512) != 128 {
		t.Errorf("the ISO in the summary: %+v", f)
	}
	if f := byPath["amd64/webboot/SHA256SUMS"]; f.Type != "sha256sums" || f.Method != "generated" {
		t.Errorf("SHA256SUMS in the summary: %+v", f)
	}
	wantNotes := []string{
		"job cloud-amd64: its build log cloud-amd64.build.log is not in " + dirs[2] + ": published without it",
		`amd64/tarball/rootfs-amd64.tar.gz is not readable by all (mode 0600, as its job wrote it): set mode: "0644" on the output in the config to publish it readable`,
	}
	if !slices.Equal(s.Notes, wantNotes) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(s.Notes, "\n"), strings.Join(wantNotes, "\n"))
	}
	if !strings.Contains(progress.String(), "listing the files of amd64/iso-hybrid/debian-live-trixie-amd64-xfce.iso") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

// A refusal writes nothing: no tree, nothing beside it.
func TestPublishRefusals(t *testing.T) {
	jobs := func() []fakeJob {
		return []fakeJob{
			{id: "a-amd64", arch: "amd64", outputs: []fakeOutput{{"disk", "a.img", []byte("disk a")}}},
			{id: "b-arm64", arch: "arm64", outputs: []fakeOutput{{"disk", "b.img", []byte("disk b")}}},
		}
	}
	for _, tc := range []struct {
		name string
		jobs func() []fakeJob
		// change breaks the fixture; dirs are returned for Publish.
		change func(t *testing.T, root string, dirs []string) []string
		want   []string
	}{
		{"two jobs one name", func() []fakeJob {
			j := jobs()
			j[1].arch = "amd64"
			j[1].outputs[0].name = "a.img"
			return j
		}, nil, []string{"two jobs claim the published name amd64/disk/a.img", "job a-amd64", "job b-arm64"}},
		{"size differs", jobs, func(t *testing.T, root string, dirs []string) []string {
			write(t, filepath.Join(dirs[0], "a.img"), []byte("disk a, grown"))
			return dirs
		}, []string{"a.img is 13 bytes, but its report", "recorded 6"}},
		{"SHA256 differs", jobs, func(t *testing.T, root string, dirs []string) []string {
			write(t, filepath.Join(dirs[1], "b.packages"), []byte("base-files\t13.8\nlinux-image-arm64\t6.13\n"))
			return dirs
		}, []string{"b.packages is size", "but its report", "b-arm64.report.json recorded", "the file changed after its build"}},
		{"plan job without directory", jobs, func(t *testing.T, root string, dirs []string) []string {
			return dirs[:1]
		}, []string{"1 job(s) with no directory among those given: b-arm64"}},
		{"different plans", func() []fakeJob {
			j := jobs()
			j[1].plan = strings.Repeat("cd", 32)
			return j
		}, nil, []string{"2 different plans", "plan abababababab: a-amd64", "plan cdcdcdcdcdcd: b-arm64"}},
		{"failed build", jobs, func(t *testing.T, root string, dirs []string) []string {
			p := filepath.Join(dirs[1], "b-arm64.report.json")
			doc := readReport(t, p)
			doc.OK, doc.ExitStatus, doc.Error = false, 1, &report.Error{Kind: "stage", Message: "stage packages failed: installing"}
			writeReport(t, p, doc)
			return dirs
		}, []string{"b-arm64.report.json: the build failed (exit status 1: stage packages failed: installing)"}},
		{"no report", jobs, func(t *testing.T, root string, dirs []string) []string {
			os.Remove(filepath.Join(dirs[1], "b-arm64.report.json"))
			return dirs
		}, []string{"job directory " + "DIR1" + ": no build report (*.report.json) in it"}},
		{"no job in the report", jobs, func(t *testing.T, root string, dirs []string) []string {
			p := filepath.Join(dirs[0], "a-amd64.report.json")
			doc := readReport(t, p)
			doc.Job = nil
			writeReport(t, p, doc)
			return dirs
		}, []string{"a-amd64.report.json: the report names no job of a plan"}},
		{"a check report", jobs, func(t *testing.T, root string, dirs []string) []string {
			p := filepath.Join(dirs[0], "a-amd64.report.json")
			doc := readReport(t, p)
			doc.Kind = "check"
			writeReport(t, p, doc)
			return dirs
		}, []string{`kind "check": not a build report`}},
		{"non-empty --to", jobs, func(t *testing.T, root string, dirs []string) []string {
			write(t, filepath.Join(root, "release", "README"), []byte("mine\n"))
			return dirs
		}, []string{"exists and is not empty", "--add"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dirs := makeJobs(t, tc.jobs())
			if tc.change != nil {
				dirs = tc.change(t, root, dirs)
			}
			before := treeFiles(t, root)
			to := filepath.Join(root, "release")
			_, err := Publish(context.Background(), Options{Dirs: dirs, To: to})
			var r *RefusedError
			if !errors.As(err, &r) {
				t.Fatalf("Publish: %v, want a refusal", err)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR1", dirs[len(dirs)-1])
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if after := treeFiles(t, root); !slices.Equal(before, after) {
				t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
			}
			if ents, _ := os.ReadDir(root); len(ents) != len(tc.jobs())+map[bool]int{true: 1}[tc.name == "non-empty --to"] {
				t.Errorf("entries beside the jobs: %v", ents)
			}
		})
	}
}

// --add puts another plan's jobs into an existing tree: the checksum
// files cover old and new files; a name already there, or an old file
// that changed, is refused.
func TestPublishAdd(t *testing.T) {
	root1, dirs1 := makeJobs(t, []fakeJob{{id: "a", arch: "amd64", outputs: []fakeOutput{{"disk", "a.img", []byte("disk a")}}}})
	to := filepath.Join(root1, "pub", "release") // its parent is made
	if _, err := Publish(context.Background(), Options{Dirs: dirs1, To: to}); err != nil {
		t.Fatal(err)
	}
	_, dirs2 := makeJobs(t, []fakeJob{{id: "b", arch: "amd64", plan: strings.Repeat("cd", 32), outputs: []fakeOutput{{"disk", "b.img", []byte("disk b")}}}})
	if _, err := Publish(context.Background(), Options{Dirs: dirs2, To: to}); err == nil || !strings.Contains(err.Error(), "--add") {
		t.Fatalf("a non-empty tree without --add: %v", err)
	}
	s, err := Publish(context.Background(), Options{Dirs: dirs2, To: to, Add: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Directories) != 1 || s.Directories[0].Files != 10 || !s.Add {
		t.Errorf("directories: %+v", s.Directories)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = filepath.Join(to, "amd64/disk")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "a.img: OK") || !strings.Contains(string(out), "b.img: OK") {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	if m, _ := filepath.Glob(filepath.Join(root1, "pub", ".release.publish-*")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
	// A second publish --add while one holds the tree is refused.
	held, err := os.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, dirs4 := makeJobs(t, []fakeJob{{id: "d", arch: "amd64", outputs: []fakeOutput{{"disk", "d.img", []byte("disk d")}}}})
	if _, err := Publish(context.Background(), Options{Dirs: dirs4, To: to, Add: true}); err == nil || !strings.Contains(err.Error(), "another vmdeb publish --add is changing this tree") {
		t.Errorf("publish --add on a locked tree: %v", err)
	}
	held.Close()
	// Again: b.img is there already.
	before := treeFiles(t, to)
	if _, err := Publish(context.Background(), Options{Dirs: dirs2, To: to, Add: true}); err == nil || !strings.Contains(err.Error(), "amd64/disk/b.img, which the tree already has") {
		t.Errorf("publishing a name twice: %v", err)
	}
	// An old file that changed since it was published.
	write(t, filepath.Join(to, "amd64/disk/a.log"), []byte("edited\n"))
	_, dirs3 := makeJobs(t, []fakeJob{{id: "c", arch: "amd64", outputs: []fakeOutput{{"disk", "c.img", []byte("disk c")}}}})
	_, err = Publish(context.Background(), Options{Dirs: dirs3, To: to, Add: true})
	var r *RefusedError
	if !errors.As(err, &r) || !strings.Contains(err.Error(), "a.log: does not match the tree's SHA256SUMS") {
		t.Errorf("a changed tree: %v", err)
	}
	if after := treeFiles(t, to); !slices.Equal(before, after) {
		t.Errorf("the tree changed:\n%v\n%v", before, after)
	}
	if m, _ := filepath.Glob(filepath.Join(root1, "pub", ".release.publish-*")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
}

// A throwaway GnuPG home with a key without passphrase; gpgv checks the
// signatures with the exported public key alone.
func TestPublishSigned(t *testing.T) {
	need(t, "gpg", "gpgv", "gpgconf")
	home, err := os.MkdirTemp("", "vmdeb-gpg-") // short: the agent's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GNUPGHOME", home)
	t.Cleanup(func() {
		exec.Command("gpgconf", "--kill", "all").Run()
		os.RemoveAll(home)
	})
	params := filepath.Join(home, "params")
	write(t, params, []byte("%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: vmdeb test\nName-Email: test@example.invalid\nExpire-Date: 0\n%commit\n"))
	if out, err := exec.Command("gpg", "--batch", "--gen-key", params).CombinedOutput(); err != nil {
		t.Fatalf("gpg --gen-key: %v\n%s", err, out)
	}
	keyring := filepath.Join(t.TempDir(), "exported.gpg")
	if out, err := exec.Command("gpg", "--batch", "--output", keyring, "--export", "test@example.invalid").CombinedOutput(); err != nil {
		t.Fatalf("gpg --export: %v\n%s", err, out)
	}
	root, dirs := makeJobs(t, []fakeJob{{id: "a", arch: "amd64", outputs: []fakeOutput{{"tarball", "a.tar.gz", tarball(t, "./etc/hostname")}}}})
	// A key GnuPG does not have is refused before anything is written.
	if _, err := Publish(context.Background(), Options{Dirs: dirs, To: filepath.Join(root, "release"), SignKey: "nobody@example.invalid"}); err == nil ||
		!strings.Contains(err.Error(), "--sign-key nobody@example.invalid: no such secret key in GNUPGHOME "+home) {
		t.Errorf("an unknown key: %v", err)
	}
	to := filepath.Join(root, "release")
	s, err := Publish(context.Background(), Options{Dirs: dirs, To: to, SignKey: "test@example.invalid"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Directories) != 1 || !s.Directories[0].Signed || s.SignKey != "test@example.invalid" {
		t.Errorf("directories: %+v", s.Directories)
	}
	dir := filepath.Join(to, "amd64/tarball")
	for _, f := range []string{"SHA256SUMS", "SHA512SUMS"} {
		sig, err := os.ReadFile(filepath.Join(dir, f+".sign"))
		if err != nil || !bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")) {
			t.Errorf("%s.sign is not an armoured signature (%v):\n%s", f, err, sig)
		}
		if out, err := exec.Command("gpgv", "--keyring", keyring, filepath.Join(dir, f+".sign"), filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Errorf("gpgv %s.sign: %v\n%s", f, err, out)
		}
	}
	// Another job added without --sign-key: the directory's checksum
	// files change, so their signatures go, with a note.
	_, dirs2 := makeJobs(t, []fakeJob{{id: "b", arch: "amd64", plan: strings.Repeat("cd", 32), outputs: []fakeOutput{{"tarball", "b.tar.gz", tarball(t, "./etc/motd")}}}})
	s, err = Publish(context.Background(), Options{Dirs: dirs2, To: to, Add: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Notes) != 2 || !strings.Contains(s.Notes[0], "amd64/tarball/SHA256SUMS.sign was removed: the checksum file it signed changed") ||
		s.Directories[0].Signed {
		t.Errorf("notes %q, directories %+v", s.Notes, s.Directories)
	}
	if _, err := os.Stat(filepath.Join(dir, "SHA256SUMS.sign")); !os.IsNotExist(err) {
		t.Errorf("the stale signature is still there: %v", err)
	}
	// Signed again with --add --sign-key.
	_, dirs3 := makeJobs(t, []fakeJob{{id: "c", arch: "amd64", plan: strings.Repeat("ef", 32), outputs: []fakeOutput{{"tarball", "c.tar.gz", tarball(t, "./etc/issue")}}}})
	if _, err = Publish(context.Background(), Options{Dirs: dirs3, To: to, Add: true, SignKey: "test@example.invalid"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"SHA256SUMS", "SHA512SUMS"} {
		if out, err := exec.Command("gpgv", "--keyring", keyring, filepath.Join(dir, f+".sign"), filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Errorf("gpgv %s.sign after --add: %v\n%s", f, err, out)
		}
	}
	if sums, _ := os.ReadFile(filepath.Join(dir, "SHA512SUMS")); strings.Count(string(sums), "\n") != 18 {
		t.Errorf("SHA512SUMS after two --add:\n%s", sums)
	}
	// A signature does not vouch for another file.
	other := filepath.Join(t.TempDir(), "SHA256SUMS")
	write(t, other, []byte("0  forged\n"))
	if err := exec.Command("gpgv", "--keyring", keyring, filepath.Join(dir, "SHA256SUMS.sign"), other).Run(); err == nil {
		t.Error("gpgv accepted the signature for another file")
	}
}

func TestUnquote(t *testing.T) {
	for in, want := range map[string]string{
		`'/live/vmlinuz'`:     "/live/vmlinuz",
		`'/a b/it'"'"'s.txt'`: "/a b/it's.txt",
		`'/x"y'`:              `/x"y`,
	} {
		if got, ok := unquote(in); !ok || got != want {
			t.Errorf("unquote(%s) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{`/bare`, `'open`, `$'\n'`} {
		if _, ok := unquote(bad); ok {
			t.Errorf("unquote(%s) accepted", bad)
		}
	}
}

// An output's companions are named as the build named its manifest,
// whatever its extension.
func TestStem(t *testing.T) {
	m := map[string]report.File{
		"a.packages": {Type: "manifest"}, "a.b.packages": {Type: "manifest"}, "img.packages": {Type: "manifest"},
		"c.packages": {Type: "sbom-spdx"},
	}
	for name, want := range map[string]string{
		"a.b.tar.gz": "a.b", "a.iso": "a", "img.sif": "img", "c.qcow2": "c", "d.tar.zst": "d", "e.unknown": "e.unknown",
	} {
		if got := stem(name, m); got != want {
			t.Errorf("stem(%s) = %s, want %s", name, got, want)
		}
	}
}

// An interrupted publish leaves nothing: no tree, no temporary one.
func TestPublishCancelled(t *testing.T) {
	root, dirs := makeJobs(t, []fakeJob{{id: "a", arch: "amd64", outputs: []fakeOutput{{"disk", "a.img", []byte("disk a")}}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Publish(ctx, Options{Dirs: dirs, To: filepath.Join(root, "release")})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Publish: %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Errorf("entries beside the job: %v", ents)
	}
}
