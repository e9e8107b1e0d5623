package build

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
)

// TestOCIStage runs the stage on a small tree (no root needed): the
// output is the only file left in its directory, readable by its owner
// only, an archive whose index names the image by its tag; under
// SOURCE_DATE_EPOCH a copy of the tree written at another time gives the
// same bytes.
func TestOCIStage(t *testing.T) {
	build := func(dir string) string {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc/apt/apt.conf.d"), 0o755)
		os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("tiny\n"), 0o644)
		os.WriteFile(filepath.Join(root, "usr/bin/hello"), []byte("#!/bin/sh\necho hello\n"), 0o755)
		if _, err := chroot.ClampTimes(root, 1700000000); err != nil {
			t.Fatal(err)
		}
		out := config.Output{Type: config.OCI, Path: "tiny.tar", Tag: "tools/tiny:2", Cmd: []string{"/usr/bin/hello"}}
		st := &State{Plan: &Plan{Spec: &config.Spec{Name: "tiny", Architecture: "armhf", Dir: dir, Outputs: []config.Output{out}}, SourceDateEpoch: 1700000000},
			Log: buildlog.Discard(), Rootfs: root}
		st.Plan.Arch.Name = "armhf"
		if err := (ociStage{out: out}).Run(context.Background(), st); err != nil {
			t.Fatal(err)
		}
		if err := st.publish(); err != nil {
			t.Fatal(err)
		}
		if len(st.Results) != 1 || st.Results[0].Type != "oci" || st.Results[0].Size == 0 {
			t.Errorf("results: %+v", st.Results)
		}
		return filepath.Join(dir, "tiny.tar")
	}
	a := build(t.TempDir())
	time.Sleep(1100 * time.Millisecond)
	b := build(t.TempDir())
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two images of equal trees under one SOURCE_DATE_EPOCH differ")
	}
	if ents, _ := os.ReadDir(filepath.Dir(a)); len(ents) != 1 {
		t.Errorf("left beside the output: %v", ents)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the image is readable by others (it holds /etc/shadow): %v %v", fi.Mode(), err)
	}
	tr := tar.NewReader(bytes.NewReader(da))
	var index []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			index, _ = io.ReadAll(tr)
		}
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string
			Platform    struct{ Architecture, Variant string }
		}
	}
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) != 1 ||
		idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "tools/tiny:2" || idx.Manifests[0].Platform.Variant != "v7" {
		t.Errorf("index.json: %s (%v)", index, err)
	}
}

func TestOCIPipeline(t *testing.T) {
	s := &config.Spec{Name: "tiny", Dir: "/o", Kernel: "none", Outputs: []config.Output{{Type: config.OCI, Path: "tiny.tar"}}}
	var names []string
	for _, st := range Stages(&Plan{Spec: s}) {
		names = append(names, st.Name())
	}
	if i := slices.Index(names, "oci"); i < 0 || i != len(names)-2 || names[i-1] != "finalise" {
		t.Errorf("stages %v: want oci after finalise, before report", names)
	}
	if slices.Contains(names, "init") {
		t.Errorf("a container image needs no init: %v", names)
	}
	writes, _ := Writes(s, "")
	var kinds []string
	for _, w := range writes {
		kinds = append(kinds, w.Kind)
	}
	for _, k := range []string{"oci", "manifest", "sbom-spdx", "sbom-cyclonedx", "sha256sums", "log"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("Writes lists no %s for an oci output: %v", k, kinds)
		}
	}
	if m := manifestPath("/o/tiny.tar"); m != "/o/tiny.packages" {
		t.Errorf("manifest of tiny.tar: %s", m)
	}
}

// vmdeb check points out a kernel installed for container images only.
func TestOCIKernelNote(t *testing.T) {
	oci := config.Output{Type: config.OCI, Path: "a.tar"}
	for _, c := range []struct {
		kernel  string
		outputs []config.Output
		note    bool
	}{
		{"", []config.Output{oci}, true},
		{"linux-image-cloud-amd64", []config.Output{oci, {Type: config.Tarball, Path: "a.tar.gz"}}, true},
		{"none", []config.Output{oci}, false},
		{"", []config.Output{oci, {Type: config.Disk, Path: "a.img"}}, false},
		{"", []config.Output{{Type: config.Tarball, Path: "a.tar.gz"}}, false},
	} {
		s := &config.Spec{Architecture: "amd64", Kernel: c.kernel, Outputs: c.outputs}
		n := ociKernelNote(s)
		if (n != "") != c.note || (n != "" && !strings.Contains(n, "kernel: none")) {
			t.Errorf("kernel %q, outputs %v: note %q", c.kernel, c.outputs, n)
		}
	}
}
