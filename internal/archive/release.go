package archive

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"pault.ag/go/debian/control"
)

// DefaultKeyring is the host's Debian archive keyring, used when the
// config names none.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// FileInfo is what a Release file says about one index file.
type FileInfo struct {
	Size   int64
	SHA256 string
}

// Release is a suite's Release (or InRelease) file: what the suite holds
// and the size and SHA256 of every index file.
type Release struct {
	Suite, Codename, Origin, Label string
	Version                        string // e.g. 13.2; empty for testing and unstable
	Date, ValidUntil               time.Time
	Architectures, Components      []string
	AcquireByHash                  bool
	// Files maps a path below dists/SUITE/ to its size and hash.
	Files map[string]FileInfo
}

// ParseRelease reads a Release file's content (the signed text of an
// InRelease file). name is used in error messages.
func ParseRelease(data []byte, name string) (*Release, error) {
	pr, err := control.NewParagraphReader(bytes.NewReader(data), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p, err := pr.Next()
	if err != nil {
		return nil, fmt.Errorf("%s: not a Release file: %w", name, err)
	}
	r := &Release{
		Suite:         strings.TrimSpace(p.Values["Suite"]),
		Codename:      strings.TrimSpace(p.Values["Codename"]),
		Origin:        strings.TrimSpace(p.Values["Origin"]),
		Label:         strings.TrimSpace(p.Values["Label"]),
		Version:       strings.TrimSpace(p.Values["Version"]),
		Architectures: strings.Fields(p.Values["Architectures"]),
		Components:    strings.Fields(p.Values["Components"]),
		AcquireByHash: strings.EqualFold(strings.TrimSpace(p.Values["Acquire-By-Hash"]), "yes"),
		Files:         map[string]FileInfo{},
	}
	if r.Suite == "" && r.Codename == "" {
		return nil, fmt.Errorf("%s: not a Release file (no Suite or Codename field)", name)
	}
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"Date", &r.Date}, {"Valid-Until", &r.ValidUntil}} {
		v := strings.TrimSpace(p.Values[f.key])
		if v == "" {
			continue
		}
		t, err := parseDate(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, f.key, err)
		}
		*f.t = t
	}
	for _, line := range strings.Split(p.Values["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !IsSHA256(f[0]) {
			return nil, fmt.Errorf("%s: bad SHA256 line %q", name, line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad SHA256 line %q", name, line)
		}
		r.Files[f[2]] = FileInfo{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(r.Files) == 0 {
		return nil, fmt.Errorf("%s: no SHA256 checksums (vmdeb only trusts SHA256)", name)
	}
	return r, nil
}

func parseDate(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read the date %q", v)
}

// IsSHA256 reports whether s is a SHA256 sum written in hex.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// VerifyRelease checks an InRelease file's signatures against k at time
// now (VerifyInRelease), parses the signed text and refuses a Release past
// its Valid-Until. It returns the Release and who signed it; name (the
// file's URL) is used in errors.
func VerifyRelease(inRelease []byte, k *Keyring, name string, now time.Time) (*Release, string, error) {
	signed, signer, err := VerifyInRelease(inRelease, k, name, now)
	if err != nil {
		return nil, "", err
	}
	r, err := ParseRelease(signed, name)
	if err != nil {
		return nil, "", err
	}
	if err := r.CheckValid(name, now); err != nil {
		return nil, "", err
	}
	return r, signer, nil
}

// CheckValid refuses a Release past its Valid-Until at time now: an
// old, validly signed file replayed by a mirror would hide updates.
func (r *Release) CheckValid(name string, now time.Time) error {
	if !r.ValidUntil.IsZero() && now.After(r.ValidUntil) {
		return fmt.Errorf("%s: expired on %s (Valid-Until): the mirror is stale or replaying old data", name, r.ValidUntil.Format(time.RFC1123))
	}
	return nil
}

// HasArch reports whether the suite has packages for arch.
func (r *Release) HasArch(a string) bool { return contains(r.Architectures, a) }

// HasComponent reports whether the suite has component c (the archive
// lists some with a prefix, such as updates/main).
func (r *Release) HasComponent(c string) bool {
	for _, x := range r.Components {
		if x == c || strings.HasSuffix(x, "/"+c) {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Keyring is a set of OpenPGP public keys that may sign the archive.
type Keyring struct {
	Path     string
	entities openpgp.EntityList
}

// LoadKeyring reads a keyring file (binary, as Debian ships them, or
// ASCII-armored) or every *.gpg and *.asc file of a directory (an apt
// trusted.gpg.d).
func LoadKeyring(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		for _, pat := range []string{"*.gpg", "*.asc"} {
			m, _ := filepath.Glob(filepath.Join(path, pat))
			files = append(files, m...)
		}
		sort.Strings(files)
	}
	k := &Keyring{Path: path}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		var el openpgp.EntityList
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP")) {
			el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		} else {
			el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
		}
		if err != nil {
			return nil, fmt.Errorf("keyring %s: %w", f, err)
		}
		k.entities = append(k.entities, el...)
	}
	if len(k.entities) == 0 {
		return nil, fmt.Errorf("keyring %s holds no OpenPGP keys", path)
	}
	return k, nil
}

// VerifyError is an InRelease file that must not be trusted.
type VerifyError struct {
	File   string
	Reason string
}

func (e *VerifyError) Error() string { return e.File + ": " + e.Reason }

// VerifyInRelease checks the OpenPGP signature of an InRelease file and
// returns the signed text and who signed it. The whole file must be the
// signed message: text outside it is refused, since a reader that took it
// would trust unsigned data. At least one signature must be good and by a
// valid key of the keyring, and none may be bad. now is the time keys and
// signatures are checked against.
func VerifyInRelease(data []byte, k *Keyring, name string, now time.Time) ([]byte, string, error) {
	fail := func(format string, a ...any) ([]byte, string, error) {
		return nil, "", &VerifyError{File: name, Reason: fmt.Sprintf(format, a...)}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		return fail("not signed (no OpenPGP signed message)")
	}
	block, rest := clearsign.Decode(trimmed)
	if block == nil {
		return fail("malformed OpenPGP signed message")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return fail("text after the signature (refused: it is not covered by it)")
	}
	sigData, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return fail("unreadable signature: %v", err)
	}
	sigs, err := splitPackets(sigData)
	if err != nil {
		return fail("unreadable signature: %v", err)
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	var good []string
	var problems []string
	for _, sig := range sigs {
		_, signer, err := openpgp.VerifyDetachedSignature(k.entities, bytes.NewReader(block.Bytes), bytes.NewReader(sig), cfg)
		switch {
		case err == nil:
			good = append(good, identity(signer))
		case errors.Is(err, pgperrors.ErrUnknownIssuer):
			problems = append(problems, "a signature by a key not in "+k.Path)
		case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrSignatureExpired), errors.Is(err, pgperrors.ErrKeyRevoked):
			problems = append(problems, fmt.Sprintf("%v (%s)", err, identity(signer)))
		default:
			return fail("BAD signature: %v", err)
		}
	}
	if len(good) == 0 {
		if len(problems) == 0 {
			problems = []string{"no signature"}
		}
		return fail("no valid signature from a key in %s: %s", k.Path, strings.Join(problems, "; "))
	}
	return block.Plaintext, strings.Join(good, ", "), nil
}

func identity(e *openpgp.Entity) string {
	if e == nil {
		return "unknown key"
	}
	if id := e.PrimaryIdentity(); id != nil {
		return id.Name
	}
	return fmt.Sprintf("key %X", e.PrimaryKey.Fingerprint)
}

// splitPackets cuts a binary OpenPGP stream into whole packets, so each
// signature of a multiply signed file is checked on its own.
func splitPackets(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		tag := b[0]
		if tag&0x80 == 0 {
			return nil, errors.New("not an OpenPGP packet")
		}
		var hdr, n int
		if tag&0x40 != 0 { // new format
			if len(b) < 2 {
				return nil, io.ErrUnexpectedEOF
			}
			switch l := int(b[1]); {
			case l < 192:
				hdr, n = 2, l
			case l < 224:
				if len(b) < 3 {
					return nil, io.ErrUnexpectedEOF
				}
				hdr, n = 3, (l-192)<<8+int(b[2])+192
			case l == 255:
				if len(b) < 6 {
					return nil, io.ErrUnexpectedEOF
				}
				hdr, n = 6, int(b[2])<<24|int(b[3])<<16|int(b[4])<<8|int(b[5])
			default:
				return nil, errors.New("partial-length packets are not signatures")
			}
		} else {
			switch tag & 3 {
			case 0:
				if len(b) < 2 {
					return nil, io.ErrUnexpectedEOF
				}
				hdr, n = 2, int(b[1])
			case 1:
				if len(b) < 3 {
					return nil, io.ErrUnexpectedEOF
				}
				hdr, n = 3, int(b[1])<<8|int(b[2])
			case 2:
				if len(b) < 5 {
					return nil, io.ErrUnexpectedEOF
				}
				hdr, n = 5, int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4])
			default:
				return nil, errors.New("indeterminate-length packet")
			}
		}
		if n < 0 || hdr+n > len(b) {
			return nil, io.ErrUnexpectedEOF
		}
		out = append(out, b[:hdr+n])
		b = b[hdr+n:]
	}
	return out, nil
}
