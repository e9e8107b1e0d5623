package sbom

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// dirFiles reads an image root from a directory of the test data.
type dirFiles struct{ fs.FS }

func (d dirFiles) ReadFile(name string) ([]byte, error) { return fs.ReadFile(d.FS, name) }

func fixture(t *testing.T) Image {
	t.Helper()
	pkgs, err := Read(dirFiles{os.DirFS("testdata/root")})
	if err != nil {
		t.Fatal(err)
	}
	return Image{Name: "debian-live-test", Suite: "trixie", Arch: "amd64", Packages: pkgs}
}

var when = time.Unix(1700000000, 0)

func TestRead(t *testing.T) {
	img := fixture(t)
	var got []string
	for _, p := range img.Packages {
		got = append(got, strings.Join([]string{p.Name, p.Architecture, p.Version, p.Source, p.SourceVersion, strings.Join(p.Licenses, "|")}, " "))
	}
	want := []string{
		"base-files amd64 13.8 base-files 13.8 ", // not machine-readable: no licence
		"libc6 amd64 2.41-12 glibc 2.41-12 LGPL-2.1+|BSD-3-clause",
		"libc6 i386 2.41-12 glibc 2.41-12 ", // no copyright file read for it: same path, read once per entry
		"libssl3 amd64 3.5.1-1 openssl 3.5.1-1 Apache-2.0",
		"libstdc++6 amd64 14.2.0-19 gcc-14 14.2.0-19 GPL-3+ with GCC-exception-3.1",
		"perl-base amd64 1:5.40.1-6 perl 1:5.40.1-6 GPL-1+ or Artistic|GPL-2+ with Font exception",
	}
	// Both libc6 entries share usr/share/doc/libc6/copyright.
	want[2] = "libc6 i386 2.41-12 glibc 2.41-12 LGPL-2.1+|BSD-3-clause"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("packages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadNoStatus(t *testing.T) {
	_, err := Read(dirFiles{os.DirFS(t.TempDir())})
	if err == nil || !strings.Contains(err.Error(), "dpkg status") {
		t.Fatalf("err = %v, want one naming the dpkg status", err)
	}
}

func TestSPDXID(t *testing.T) {
	for in, want := range map[string]string{
		"GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later", "LGPL-2.1+": "LGPL-2.1-or-later",
		"GPL-3.0+": "GPL-3.0-or-later", "AGPL-3": "AGPL-3.0-only", "Expat": "MIT", "BSD-3-clause": "BSD-3-Clause",
		"Artistic": "Artistic-1.0-Perl", "public-domain": "LicenseRef-public-domain",
		"GPL-2+ with OpenSSL exception": "LicenseRef-GPL-2-with-OpenSSL-exception",
	} {
		if got, _ := SPDXID(in); got != want {
			t.Errorf("SPDXID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSPDXExpression(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
		refs []string
	}{
		{nil, "NOASSERTION", nil},
		{[]string{"GPL-2+"}, "GPL-2.0-or-later", nil},
		{[]string{"GPL-1+ or Artistic", "Zlib"}, "(GPL-1.0-or-later OR Artistic-1.0-Perl) AND Zlib", nil},
		{[]string{"public-domain", "BSD-2-clause and ISC"}, "LicenseRef-public-domain AND (BSD-2-Clause AND ISC)", []string{"LicenseRef-public-domain"}},
	} {
		got, refs := SPDXExpression(c.in)
		if got != c.want || !reflect.DeepEqual(refs, c.refs) {
			t.Errorf("SPDXExpression(%q) = %q %q, want %q %q", c.in, got, refs, c.want, c.refs)
		}
	}
}

func TestPURL(t *testing.T) {
	p := Package{Name: "perl-base", Version: "1:5.40.1-6+deb13u1", Architecture: "amd64"}
	want := "pkg:deb/debian/perl-base@1%3A5.40.1-6%2Bdeb13u1?arch=amd64&distro=trixie"
	if got := PURL(p, "trixie"); got != want {
		t.Errorf("PURL = %q, want %q", got, want)
	}
}

// compile loads a JSON schema and the documents it refers to, by their
// $id, without the network.
func compile(t *testing.T, main string, files ...string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	var mainID string
	for i, f := range append([]string{main}, files...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			id = "file://" + f
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mainID = id
		}
	}
	s, err := c.Compile(mainID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, doc []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("the document does not validate: %v", err)
	}
}

func TestSPDXValidates(t *testing.T) {
	img := fixture(t)
	doc, err := SPDX(img, when, Tool{"vmdeb", "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	validate(t, compile(t, "testdata/spdx-schema-2.3.json"), doc)

	var d spdxDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Packages) != len(img.Packages)+1 || d.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("%d packages, created %s", len(d.Packages), d.CreationInfo.Created)
	}
	ids := map[string]bool{}
	for _, p := range d.Packages {
		if ids[p.SPDXID] {
			t.Errorf("SPDXID %s twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	contains := 0
	for _, r := range d.Relationships {
		if r.Type == "CONTAINS" && r.Element == "SPDXRef-image" && ids[r.Related] {
			contains++
		}
	}
	if contains != len(img.Packages) {
		t.Errorf("%d CONTAINS relationships, want %d", contains, len(img.Packages))
	}
	// Every LicenseRef used is declared.
	declared := map[string]bool{}
	for _, e := range d.Extracted {
		declared[e.LicenseID] = true
	}
	for _, p := range d.Packages {
		for _, w := range strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(p.LicenseDeclared)) {
			if strings.HasPrefix(w, "LicenseRef-") && !declared[w] {
				t.Errorf("%s: %s used, not declared", p.Name, w)
			}
		}
	}
	again, _ := SPDX(img, when, Tool{"vmdeb", "1.0"})
	if !bytes.Equal(doc, again) {
		t.Error("two SPDX documents of the same image differ")
	}
}

// cycloneDXSchemas finds the official CycloneDX schemas in the Go module
// of the CycloneDX Go library (which the test also decodes with).
func cycloneDXSchemas(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
	if err != nil {
		t.Fatalf("finding the CycloneDX module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "schema")
}

func TestCycloneDXValidates(t *testing.T) {
	img := fixture(t)
	doc, err := CycloneDX(img, when, Tool{"vmdeb", "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	dir := cycloneDXSchemas(t)
	validate(t, compile(t, filepath.Join(dir, "bom-1.5.schema.json"),
		filepath.Join(dir, "spdx.schema.json"), filepath.Join(dir, "jsf-0.82.schemax.json")), doc)

	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(doc), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_5 || bom.Components == nil || len(*bom.Components) != len(img.Packages) {
		t.Fatalf("spec %v, components %v", bom.SpecVersion, bom.Components)
	}
	byName := map[string]cdx.Component{}
	for _, c := range *bom.Components {
		byName[c.Name+":"+c.PackageURL[strings.Index(c.PackageURL, "arch=")+5:strings.Index(c.PackageURL, "&")]] = c
	}
	if c := byName["libssl3:amd64"]; c.Licenses == nil || (*c.Licenses)[0].License.ID != "Apache-2.0" {
		t.Errorf("libssl3's licence: %+v", c.Licenses)
	}
	if c := byName["perl-base:amd64"]; c.Licenses == nil || !strings.Contains((*c.Licenses)[0].Expression, "GPL-1.0-or-later OR Artistic-1.0-Perl") {
		t.Errorf("perl-base's licence: %+v", c.Licenses)
	}
	if _, ok := byName["libc6:i386"]; !ok {
		t.Error("the i386 libc6 is missing")
	}
	deps := (*bom.Dependencies)[0]
	if deps.Ref != "image" || len(*deps.Dependencies) != len(img.Packages) {
		t.Errorf("dependencies: %+v", deps)
	}
}
