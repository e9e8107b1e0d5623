// Package oci writes a root file system as a container image: one layer
// (the tree as a gzip-compressed tar) with its image config, manifest and
// index, in an OCI image layout packed into a tar file.
//
// The archive is what podman load, skopeo (oci-archive:) and Docker 25 or
// later read as an OCI image layout; it also carries Docker's
// manifest.json, so docker load of older releases (and skopeo's
// docker-archive:) read the same file. One file for every loader, as
// docker save itself writes since Docker 25. The structures are the OCI
// image specification's own Go types (image-spec's specs-go), marshalled
// with encoding/json: the same input gives the same bytes.
package oci

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is the OCI platform (GOARCH-style architecture and variant)
// of a Debian architecture; ok is false for one it does not know.
func Platform(debArch string) (p v1.Platform, ok bool) {
	arch, variant := "", ""
	switch debArch {
	case "amd64", "riscv64", "s390x", "loong64":
		arch = debArch
	case "arm64":
		arch, variant = "arm64", "v8"
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v5"
	case "i386":
		arch = "386"
	case "ppc64el":
		arch = "ppc64le"
	case "mips64el":
		arch = "mips64le"
	default:
		return v1.Platform{}, false
	}
	return v1.Platform{Architecture: arch, OS: "linux", Variant: variant}, true
}

// The image reference grammar (as docker tag and podman tag take it):
// [DOMAIN[:PORT]/]PATH[/PATH...][:TAG], paths in lower case.
var (
	pathComponent   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domain          = domainComponent + `(?:\.` + domainComponent + `)*(?::[0-9]+)?`
	refRE           = regexp.MustCompile(`^(?:` + domain + `/)?` + pathComponent + `(?:/` + pathComponent + `)*(?::[\w][\w.-]{0,127})?$`)
	nameRE          = regexp.MustCompile(`^` + pathComponent + `$`)
)

// ValidRef checks an image reference NAME[:TAG], e.g. vmdeb:1.0 or
// registry.example:5000/tools/vmdeb (no digest: the build makes it).
func ValidRef(ref string) error {
	name, _ := splitTag(ref)
	switch {
	case ref == "":
		return fmt.Errorf("empty image name")
	case strings.Contains(ref, "@"):
		return fmt.Errorf("%q: a digest (@sha256:...) is the image's own, not given; write NAME or NAME:TAG", ref)
	case !refRE.MatchString(ref):
		return fmt.Errorf("%q is not an image name (valid: NAME or NAME:TAG, e.g. vmdeb:1.0 or HOST:PORT/tools/vmdeb:latest; the name in lower case letters, digits and . _ - separators, / between its parts; the tag at most 128 of A-Z a-z 0-9 _ . -)", ref)
	case len(name) > 255:
		return fmt.Errorf("%q: the name part has %d characters, at most 255", ref, len(name))
	}
	return nil
}

// ValidName reports whether name can stand alone as an image's name (the
// default reference is the config's name).
func ValidName(name string) bool { return nameRE.MatchString(name) && len(name) <= 255 }

// splitTag splits a reference into its name and tag ("" when none): the
// tag follows the last ':' after the last '/' (a ':' before it is a
// registry's port).
func splitTag(ref string) (name, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

// FullRef is ref with the tag "latest" when it names none: docker load
// takes only NAME:TAG.
func FullRef(ref string) string {
	if _, tag := splitTag(ref); tag == "" {
		return ref + ":latest"
	}
	return ref
}

// DefaultPath is the PATH of an image that sets none: the one Debian's own
// container images have.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCmd is the command of an image with neither cmd nor entrypoint.
var DefaultCmd = []string{"/bin/bash"}

// Config is what the image says beside its files.
type Config struct {
	// Ref names the image (FullRef adds :latest): the index's
	// org.opencontainers.image.ref.name, and Docker's RepoTags.
	Ref string
	// Arch is the image's Debian architecture.
	Arch string
	// Created is the image's date (SOURCE_DATE_EPOCH when set).
	Created time.Time
	// Cmd, Entrypoint, Env and Labels are the container's runtime
	// defaults (Env gets DefaultPath unless it sets PATH; Cmd is
	// DefaultCmd when neither it nor Entrypoint is given).
	Cmd, Entrypoint, Env []string
	Labels               map[string]string
	// CreatedBy is the history's note of what made the layer.
	CreatedBy string
}

// Layer describes the compressed layer blob: its digest and size, and
// DiffID, the digest of the uncompressed tar.
type Layer struct {
	Digest, DiffID digest.Digest
	Size           int64
}

// Blob is a JSON document of the image with its descriptor.
type Blob struct {
	Desc v1.Descriptor
	Data []byte
}

// Image is the image's JSON documents, made by Describe.
type Image struct {
	Config, Manifest Blob
	// Index is the layout's index.json, DockerManifest its manifest.json.
	Index, DockerManifest []byte
	Layer                 v1.Descriptor
}

// Describe makes the image config, manifest, index and Docker manifest of
// an image of the one layer l.
func Describe(c Config, l Layer) (*Image, error) {
	plat, ok := Platform(c.Arch)
	if !ok {
		return nil, fmt.Errorf("no OCI platform known for the Debian architecture %q", c.Arch)
	}
	if err := ValidRef(c.Ref); err != nil {
		return nil, err
	}
	created := c.Created.UTC().Truncate(time.Second)
	cfg := v1.ImageConfig{Env: imageEnv(c.Env), Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels}
	if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
		cfg.Cmd = DefaultCmd
	}
	img := v1.Image{
		Created:  &created,
		Platform: plat,
		Config:   cfg,
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}},
		History:  []v1.History{{Created: &created, CreatedBy: c.CreatedBy}},
	}
	var im Image
	var err error
	if im.Config, err = blob(v1.MediaTypeImageConfig, img); err != nil {
		return nil, err
	}
	im.Layer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: l.Digest, Size: l.Size}
	man := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    im.Config.Desc,
		Layers:    []v1.Descriptor{im.Layer},
	}
	if im.Manifest, err = blob(v1.MediaTypeImageManifest, man); err != nil {
		return nil, err
	}
	ref := FullRef(c.Ref)
	desc := im.Manifest.Desc
	desc.Platform = &plat
	desc.Annotations = map[string]string{v1.AnnotationRefName: ref}
	idx := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{desc},
	}
	if im.Index, err = json.Marshal(idx); err != nil {
		return nil, err
	}
	// Docker's docker-archive manifest, pointing at the same blobs.
	docker := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(im.Config.Desc.Digest), RepoTags: []string{ref}, Layers: []string{blobPath(l.Digest)}}}
	if im.DockerManifest, err = json.Marshal(docker); err != nil {
		return nil, err
	}
	return &im, nil
}

// imageEnv is env with DefaultPath first, unless env sets PATH.
func imageEnv(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append([]string{DefaultPath}, env...)
}

func blob(mediaType string, v any) (Blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return Blob{}, err
	}
	return Blob{Desc: v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}, nil
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// layoutVersion is the oci-layout file.
const layoutVersion = `{"imageLayoutVersion":"` + v1.ImageLayoutVersion + `"}`

// WriteArchive writes the image as an OCI image layout in a tar to w:
// oci-layout, index.json, Docker's manifest.json and the blobs, the layer
// read from layer (l.Size bytes). Entries are sorted by name, owned by
// root, dated im's creation date (date): the same image, the same bytes.
func WriteArchive(w io.Writer, im *Image, layer io.Reader, date time.Time) error {
	date = date.UTC().Truncate(time.Second)
	type entry struct {
		name string
		data []byte
		r    io.Reader
		size int64
	}
	entries := []entry{
		{name: "blobs/"}, {name: "blobs/sha256/"},
		{name: "oci-layout", data: []byte(layoutVersion)},
		{name: "index.json", data: im.Index},
		{name: "manifest.json", data: im.DockerManifest},
		{name: blobPath(im.Config.Desc.Digest), data: im.Config.Data},
		{name: blobPath(im.Manifest.Desc.Digest), data: im.Manifest.Data},
		{name: blobPath(im.Layer.Digest), r: layer, size: im.Layer.Size},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: date, Format: tar.FormatUSTAR}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.r != nil:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, e.size
		default:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(e.data))
		}
		if e.r != nil && e.size >= 1<<33 {
			h.Format = tar.FormatPAX // a size beyond USTAR's 8 GiB
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.r != nil {
			if n, err := io.CopyN(tw, e.r, e.size); err != nil {
				return fmt.Errorf("copying the layer into the archive (%d of %d bytes): %w", n, e.size, err)
			}
		} else if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}
