package sbom

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Tool names the program that made an SBOM, e.g. "vmdeb 1.2".
type Tool struct{ Name, Version string }

// A document's dates are the build's (SOURCE_DATE_EPOCH when set) and its
// identifiers are digests of what it describes, so that a reproducible
// build gives the same SBOM.

// docUUID is a UUID (version 8, RFC 9562) made from the image's contents.
func docUUID(img Image, kind string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", kind, img.Name, img.Suite, img.Arch)
	for _, p := range img.Packages {
		fmt.Fprintf(h, "%s\t%s\t%s\n", p.Name, p.Architecture, p.Version)
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// ---- SPDX 2.3 ----

type spdxDoc struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreation       `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
	Extracted         []spdxExtracted    `json:"hasExtractedLicensingInfos,omitempty"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string       `json:"SPDXID"`
	Name             string       `json:"name"`
	VersionInfo      string       `json:"versionInfo,omitempty"`
	Supplier         string       `json:"supplier,omitempty"`
	DownloadLocation string       `json:"downloadLocation"`
	FilesAnalyzed    bool         `json:"filesAnalyzed"`
	Homepage         string       `json:"homepage,omitempty"`
	SourceInfo       string       `json:"sourceInfo,omitempty"`
	LicenseConcluded string       `json:"licenseConcluded"`
	LicenseDeclared  string       `json:"licenseDeclared"`
	CopyrightText    string       `json:"copyrightText"`
	Summary          string       `json:"summary,omitempty"`
	ExternalRefs     []spdxExtRef `json:"externalRefs,omitempty"`
}

type spdxExtRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

type spdxExtracted struct {
	LicenseID     string `json:"licenseId"`
	Name          string `json:"name"`
	ExtractedText string `json:"extractedText"`
}

var notSPDXID = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// SPDX writes the image's SPDX 2.3 JSON document: the image as a package
// that CONTAINS every installed binary package.
func SPDX(img Image, created time.Time, tool Tool) ([]byte, error) {
	const imageID = "SPDXRef-image"
	doc := spdxDoc{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              img.Name,
		DocumentNamespace: "urn:uuid:" + docUUID(img, "spdx"),
		CreationInfo:      spdxCreation{Created: stamp(created), Creators: []string{"Tool: " + tool.Name + "-" + tool.Version}},
		Packages: []spdxPackage{{
			SPDXID: imageID, Name: img.Name, VersionInfo: img.Suite, DownloadLocation: "NOASSERTION",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			Summary: "Debian " + img.Suite + " image for " + img.Arch,
		}},
		Relationships: []spdxRelationship{{"SPDXRef-DOCUMENT", "DESCRIBES", imageID}},
	}
	refNames := map[string]string{}
	used := map[string]bool{imageID: true}
	for _, p := range img.Packages {
		id := "SPDXRef-deb-" + strings.Trim(notSPDXID.ReplaceAllString(p.Name+"-"+p.Architecture, "-"), "-")
		for n := 2; used[id]; n++ {
			id = fmt.Sprintf("%s-%d", strings.TrimSuffix(id, fmt.Sprintf("-%d", n-1)), n)
		}
		used[id] = true
		expr, refs := SPDXExpression(p.Licenses)
		for _, r := range refs {
			if _, ok := refNames[r]; !ok {
				refNames[r] = originalName(p.Licenses, r)
			}
		}
		doc.Packages = append(doc.Packages, spdxPackage{
			SPDXID: id, Name: p.Name, VersionInfo: p.Version, Supplier: agent(p.Maintainer),
			DownloadLocation: "NOASSERTION", Homepage: p.Homepage,
			SourceInfo:       "built package from: " + p.Source + " " + p.SourceVersion,
			LicenseConcluded: "NOASSERTION", LicenseDeclared: expr, CopyrightText: "NOASSERTION",
			Summary:      p.Summary,
			ExternalRefs: []spdxExtRef{{"PACKAGE-MANAGER", "purl", PURL(p, img.Suite)}},
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", id})
	}
	for _, r := range sortedKeys(refNames) {
		doc.Extracted = append(doc.Extracted, spdxExtracted{
			LicenseID: r, Name: refNames[r],
			ExtractedText: "The licence named \"" + refNames[r] + "\" in the Debian copyright files (usr/share/doc/PACKAGE/copyright) of the packages that declare it.",
		})
	}
	return marshal(doc)
}

// originalName finds the copyright file's spelling of a LicenseRef.
func originalName(names []string, ref string) string {
	for _, n := range names {
		for _, t := range opSplit.Split(strings.Trim(n, "()"), -1) {
			if id, ok := SPDXID(t); !ok && id == ref {
				return strings.TrimSpace(t)
			}
		}
	}
	return strings.TrimPrefix(ref, "LicenseRef-")
}

// agent writes a Maintainer field in SPDX's agent syntax.
func agent(m string) string {
	m = strings.TrimSpace(m)
	if m == "" {
		return ""
	}
	name, mail, _ := strings.Cut(m, "<")
	name = strings.TrimSpace(name)
	kind := "Person"
	low := strings.ToLower(name)
	for _, w := range []string{"team", "maintainers", "group", "project", "developers", "packagers"} {
		if strings.Contains(low, w) {
			kind = "Organization"
		}
	}
	if mail = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(mail), ">")); mail != "" {
		return kind + ": " + name + " (" + mail + ")"
	}
	return kind + ": " + name
}

// ---- CycloneDX 1.5 ----

type cdxDoc struct {
	Schema       string          `json:"$schema"`
	BOMFormat    string          `json:"bomFormat"`
	SpecVersion  string          `json:"specVersion"`
	SerialNumber string          `json:"serialNumber"`
	Version      int             `json:"version"`
	Metadata     cdxMetadata     `json:"metadata"`
	Components   []cdxComponent  `json:"components"`
	Dependencies []cdxDependency `json:"dependencies"`
}

type cdxMetadata struct {
	Timestamp string       `json:"timestamp"`
	Tools     cdxTools     `json:"tools"`
	Component cdxComponent `json:"component"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	Type        string        `json:"type"`
	BOMRef      string        `json:"bom-ref,omitempty"`
	Publisher   string        `json:"publisher,omitempty"`
	Name        string        `json:"name"`
	Version     string        `json:"version,omitempty"`
	Description string        `json:"description,omitempty"`
	Licenses    []cdxLicense  `json:"licenses,omitempty"`
	PURL        string        `json:"purl,omitempty"`
	Properties  []cdxProperty `json:"properties,omitempty"`
}

type cdxLicense struct {
	License    *cdxLicenseID `json:"license,omitempty"`
	Expression string        `json:"expression,omitempty"`
}

type cdxLicenseID struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxDependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// CycloneDX writes the image's CycloneDX 1.5 JSON BOM: the image is the
// metadata's component, every installed binary package a component it
// depends on.
func CycloneDX(img Image, created time.Time, tool Tool) ([]byte, error) {
	const imageRef = "image"
	doc := cdxDoc{
		Schema: "http://cyclonedx.org/schema/bom-1.5.schema.json", BOMFormat: "CycloneDX", SpecVersion: "1.5",
		SerialNumber: "urn:uuid:" + docUUID(img, "cyclonedx"), Version: 1,
		Metadata: cdxMetadata{
			Timestamp: stamp(created),
			Tools:     cdxTools{Components: []cdxComponent{{Type: "application", Name: tool.Name, Version: tool.Version}}},
			Component: cdxComponent{Type: "operating-system", BOMRef: imageRef, Name: img.Name, Version: img.Suite,
				Description: "Debian " + img.Suite + " image for " + img.Arch},
		},
		Components: []cdxComponent{},
	}
	dep := cdxDependency{Ref: imageRef, DependsOn: []string{}}
	for _, p := range img.Packages {
		purl := PURL(p, img.Suite)
		doc.Components = append(doc.Components, cdxComponent{
			Type: "library", BOMRef: purl, Publisher: p.Maintainer, Name: p.Name, Version: p.Version,
			Description: p.Summary, Licenses: cdxLicenses(p.Licenses), PURL: purl,
			Properties: []cdxProperty{
				{"debian:architecture", p.Architecture},
				{"debian:source", p.Source},
				{"debian:source_version", p.SourceVersion},
			},
		})
		dep.DependsOn = append(dep.DependsOn, purl)
	}
	doc.Dependencies = []cdxDependency{dep}
	return marshal(doc)
}

// cdxLicenses is one licence by SPDX id where the copyright file names
// one known licence, an SPDX expression otherwise.
func cdxLicenses(names []string) []cdxLicense {
	if len(names) == 0 {
		return nil
	}
	if len(names) == 1 && !opSplit.MatchString(names[0]) {
		if id, ok := SPDXID(names[0]); ok {
			return []cdxLicense{{License: &cdxLicenseID{ID: id}}}
		}
		return []cdxLicense{{License: &cdxLicenseID{Name: strings.TrimSpace(names[0])}}}
	}
	expr, _ := SPDXExpression(names)
	return []cdxLicense{{Expression: expr}}
}

func marshal(v interface{}) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
