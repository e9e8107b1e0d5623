package bootstrap

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"vmdeb/internal/archive"
	"vmdeb/internal/imgroot"
)

// finish writes what debootstrap leaves for the next steps: apt's sources
// and, when the base set lacks the archive keyring package, the keyring
// that verified the archive.
func finish(r Request, arc *archive.Archive, set archive.BaseSet) error {
	src := fmt.Sprintf("deb %s %s %s\n", strings.TrimRight(r.Mirror, "/"), r.Suite, strings.Join(arc.Source.Components, " "))
	if err := os.MkdirAll(filepath.Join(r.Target, "etc/apt"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Target, "etc/apt/sources.list"), []byte(src), 0o644); err != nil {
		return err
	}
	for _, p := range set.All() {
		if p.Name == "debian-archive-keyring" {
			return nil
		}
	}
	if arc.Signer == "" {
		return nil
	}
	data, err := os.ReadFile(arc.KeyringPath)
	if err != nil {
		return nil // a keyring directory: apt in the image is configured by the user
	}
	dst := filepath.Join(r.Target, "etc/apt/trusted.gpg.d", filepath.Base(arc.KeyringPath))
	if !strings.HasSuffix(dst, ".gpg") && !strings.HasSuffix(dst, ".asc") {
		dst += ".gpg"
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// seedLists gives the chroot's apt the index the bootstrap verified: the
// InRelease and each component's uncompressed Packages, under the names
// apt gives them, so that `apt-get update` finds them current and fetches
// only the InRelease again (apt checks it as usual, and fetches the
// indices anew if the suite changed meanwhile). It returns how many
// Packages files it wrote (0: nothing to seed, apt fetches everything).
func seedLists(root string, arc *archive.Archive, cache *archive.Cache) (int, error) {
	u, err := url.Parse(arc.Source.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || arc.Signer == "" {
		return 0, nil // file: mirrors are read in place; unsigned ones are apt's to judge
	}
	type file struct{ name, from string }
	var files []file
	for _, comp := range arc.Source.Components {
		rel := comp + "/binary-" + arc.Source.Arch + "/Packages"
		fi, ok := arc.Release.Files[rel]
		if !ok {
			return 0, nil
		}
		p := cache.Path(fi.SHA256)
		if !cache.Has(p, "dists/"+arc.Source.Suite+"/"+rel, fi) {
			return 0, nil
		}
		files = append(files, file{aptListName(u, "dists/"+arc.Source.Suite+"/"+rel), p})
	}
	img, err := imgroot.Open(root)
	if err != nil {
		return 0, err
	}
	defer img.Close()
	const dir = "var/lib/apt/lists/"
	if err := img.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return 0, err
		}
		if err := img.WriteFile(dir+f.name, data, 0o644); err != nil {
			return 0, err
		}
	}
	// Last, so that apt never sees an InRelease without its indices.
	if err := img.WriteFile(dir+aptListName(u, "dists/"+arc.Source.Suite+"/InRelease"), arc.InRelease, 0o644); err != nil {
		return 0, err
	}
	return len(files), nil
}

// aptListName is the name apt gives, in /var/lib/apt/lists, to the file
// rel of the mirror u (apt's URItoFileName): the URI without its scheme
// and credentials, a few characters %-escaped, '/' turned into '_'.
func aptListName(u *url.URL, rel string) string {
	s := u.Host + strings.TrimRight(u.Path, "/") + "/" + rel
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\\|{}[]<>\"^~_=!@#$%^&*", c) >= 0 {
			fmt.Fprintf(&b, "%%%02x", c)
			continue
		}
		if c == '/' {
			c = '_'
		}
		b.WriteByte(c)
	}
	return b.String()
}
