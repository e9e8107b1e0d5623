// Package archive reads a Debian archive with apt's guarantees and without
// apt: the suite's InRelease verified against an OpenPGP keyring, Packages
// indices checked against its SHA256 sums, every .deb checked against its
// index entry, all of it kept in a content-addressed cache that every
// build on the machine shares. It also resolves a debootstrap variant's
// package set and unpacks packages in Go.
package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/buildlog"
)

// Source says which archive, suite and packages to read.
type Source struct {
	Mirror     string // http://HOST/debian, https://…, file:///…
	Suite      string // codename or alias
	Components []string
	Arch       string
	// Keyring verifies InRelease; "" means DefaultKeyring.
	Keyring string
	// Insecure accepts an InRelease that is unsigned or not signed by the
	// keyring (with a loud warning). Index and package hashes are still
	// checked.
	Insecure bool
}

// Archive is a suite whose Release was verified and whose Packages
// indices were read.
type Archive struct {
	Source  Source
	Release *Release
	// Signer says who signed the InRelease ("" when accepted unsigned).
	Signer string
	// InRelease is the file as fetched.
	InRelease []byte
	Index     *Index
	// KeyringPath is the keyring that verified it.
	KeyringPath string

	client *Client
	cache  *Cache
	log    *buildlog.Log
}

// Open fetches and verifies the suite's InRelease, then fetches (or takes
// from the cache) the Packages index of each component and checks it
// against the Release's SHA256 sum.
func Open(ctx context.Context, src Source, cl *Client, cache *Cache, log *buildlog.Log) (*Archive, error) {
	if src.Keyring == "" {
		src.Keyring = DefaultKeyring
	}
	if len(src.Components) == 0 {
		src.Components = []string{"main"}
	}
	a := &Archive{Source: src, client: cl, cache: cache, log: log, KeyringPath: src.Keyring}
	if err := a.readRelease(ctx); err != nil {
		return nil, err
	}
	if err := a.readPackages(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Archive) distURL(elem ...string) string {
	return joinURL(a.Source.Mirror, append([]string{"dists", a.Source.Suite}, elem...)...)
}

func (a *Archive) readRelease(ctx context.Context) error {
	src := a.Source
	u := a.distURL("InRelease")
	data, err := a.client.Get(ctx, u, 64<<20)
	if err != nil {
		if NotFound(err) {
			return fmt.Errorf("the mirror %s has no suite %s (%s not found)", src.Mirror, src.Suite, u)
		}
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	a.InRelease = data
	var signed []byte
	keyring, kerr := LoadKeyring(src.Keyring)
	if kerr == nil {
		signed, a.Signer, err = VerifyInRelease(data, keyring, u, time.Now())
	} else {
		err = kerr
	}
	if err != nil {
		if !src.Insecure {
			return fmt.Errorf("%w (refusing an archive that is not signed by a trusted key; `insecure: true` in the config skips this check)", err)
		}
		a.log.Printf("WARNING: %v", err)
		a.log.Printf("WARNING: the archive's signature is NOT verified (insecure: true): anyone between this host and %s can change what gets installed", src.Mirror)
		signed = unsignedText(data)
		a.Signer = ""
	}
	r, err := ParseRelease(signed, u)
	if err != nil {
		return err
	}
	if err := r.CheckValid(u, time.Now()); err != nil && !src.Insecure {
		return err
	}
	if !r.HasArch(src.Arch) {
		return fmt.Errorf("%s: the suite has no %s packages (it has: %s)", u, src.Arch, strings.Join(r.Architectures, ", "))
	}
	for _, c := range src.Components {
		if !r.HasComponent(c) {
			return fmt.Errorf("%s: the suite has no component %q (it has: %s)", u, c, strings.Join(r.Components, ", "))
		}
	}
	a.Release = r
	if a.Signer != "" {
		a.log.Logf("%s: good signature from %s", u, a.Signer)
	}
	return nil
}

// unsignedText is the Release text of an InRelease accepted without a
// valid signature.
func unsignedText(data []byte) []byte {
	const begin = "-----BEGIN PGP SIGNED MESSAGE-----"
	if !bytes.Contains(data, []byte(begin)) {
		return data
	}
	// Skip the armor headers (up to the first empty line) and stop at the
	// signature.
	_, body, _ := bytes.Cut(data, []byte("\n\n"))
	body, _, _ = bytes.Cut(body, []byte("-----BEGIN PGP SIGNATURE-----"))
	var out []byte
	for _, l := range bytes.SplitAfter(body, []byte("\n")) {
		out = append(out, bytes.TrimPrefix(l, []byte("- "))...)
	}
	return out
}

// indexExts are the Packages compressions in order of preference: the
// fastest to decompress first (zstd, gzip), since a warm build reads the
// index from the cache every time.
var indexExts = []string{".zst", ".gz", ".xz", "", ".bz2"}

// IndexFile picks the Packages file of a component from the Release.
func (a *Archive) IndexFile(component string) (string, FileInfo, error) {
	base := component + "/binary-" + a.Source.Arch + "/Packages"
	for _, ext := range indexExts {
		if fi, ok := a.Release.Files[base+ext]; ok {
			return base + ext, fi, nil
		}
	}
	return "", FileInfo{}, fmt.Errorf("%s: no SHA256 for %s in the Release file", a.distURL("InRelease"), base)
}

func (a *Archive) readPackages(ctx context.Context) error {
	a.Index = NewIndex(a.Source.Arch)
	results := make([][]*Package, len(a.Source.Components))
	errs := make([]error, len(a.Source.Components))
	var wg sync.WaitGroup
	for i, comp := range a.Source.Components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = a.readComponent(ctx, comp)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, r := range results {
		a.Index.Add(r)
	}
	return nil
}

func (a *Archive) readComponent(ctx context.Context, comp string) ([]*Package, error) {
	plainRel := comp + "/binary-" + a.Source.Arch + "/Packages"
	plainName := "dists/" + a.Source.Suite + "/" + plainRel
	plain, hasPlain := a.Release.Files[plainRel]
	if hasPlain {
		// A warm build reads the uncompressed index from the cache,
		// checked against the Release like a fresh download.
		p := a.cache.Path(plain.SHA256)
		if data, err := os.ReadFile(p); err == nil {
			if int64(len(data)) == plain.Size && SHA256Hex(data) == plain.SHA256 {
				return a.parseIndex(data, comp, plainName)
			}
			a.cache.notef("%s: the cached copy is corrupt; downloading it again", plainName)
			os.Remove(p)
		}
	}
	rel, fi, err := a.IndexFile(comp)
	if err != nil {
		return nil, err
	}
	name := "dists/" + a.Source.Suite + "/" + rel
	u := a.distURL(rel)
	if a.Release.AcquireByHash {
		// by-hash names never change content, so a mirror being updated
		// cannot hand out an index that no longer matches the Release.
		u = a.distURL(path.Dir(rel), "by-hash", "SHA256", fi.SHA256)
	}
	packed, err := a.client.Get(ctx, u, fi.Size)
	if err != nil && a.Release.AcquireByHash && NotFound(err) {
		packed, err = a.client.Get(ctx, a.distURL(rel), fi.Size)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", name, err)
	}
	if got := SHA256Hex(packed); int64(len(packed)) != fi.Size || got != fi.SHA256 {
		return nil, &HashError{File: name, Want: fi.SHA256, Got: got, WantSize: fi.Size, GotSize: int64(len(packed)), Downloaded: true}
	}
	data := packed
	if ext := path.Ext(rel); ext != "" {
		z, err := decompress(bytes.NewReader(packed), rel)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		data, err = io.ReadAll(z)
		z.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if hasPlain {
		if got := SHA256Hex(data); int64(len(data)) != plain.Size || got != plain.SHA256 {
			return nil, &HashError{File: plainName, Want: plain.SHA256, Got: got, WantSize: plain.Size, GotSize: int64(len(data)), Downloaded: true}
		}
		if _, err := a.cache.Put(ctx, plainName, plain, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return nil, err
		}
	}
	return a.parseIndex(data, comp, name)
}

func (a *Archive) parseIndex(data []byte, comp, name string) ([]*Package, error) {
	pkgs, err := ParsePackagesData(data, comp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a.log.Logf("%s: %d packages", name, len(pkgs))
	return pkgs, nil
}

// SHA256Hex is the SHA256 of b in lower-case hex, as indices write it.
func SHA256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Fetched is a package whose verified file is in the cache.
type Fetched struct {
	*Package
	Path string // in the cache; never rewritten
}

// Fetch makes sure one package is in the cache, verified against its
// index entry, and returns the cached file.
func (a *Archive) Fetch(ctx context.Context, p *Package) (string, error) {
	path, err := a.cache.Get(ctx, a.client, joinURL(a.Source.Mirror, p.Filename), p.DebName(), FileInfo{Size: p.Size, SHA256: p.SHA256})
	if err != nil {
		var he *HashError
		if errors.As(err, &he) {
			he.File = p.Filename
		}
		return "", fmt.Errorf("%s: %w", p.ID(), err)
	}
	return path, nil
}

// Download makes sure every package is in the cache, verified against its
// index entry, fetching the missing ones in parallel (jobs at a time).
// progress, if set, is called after each package.
func (a *Archive) Download(ctx context.Context, pkgs []*Package, jobs int, progress func(done, total int)) ([]Fetched, error) {
	if jobs < 1 {
		jobs = 1
	}
	out := make([]Fetched, len(pkgs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		done  int
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, jobs)
	for i, p := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			path, err := a.Fetch(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
					cancel()
				}
				return
			}
			out[i] = Fetched{p, path}
			done++
			if progress != nil {
				progress(done, len(pkgs))
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Names lists package names, sorted.
func Names(pkgs []*Package) []string {
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = p.Name
	}
	sort.Strings(out)
	return out
}
