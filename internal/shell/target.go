// Package shell opens a shell (or runs a command) inside a built image
// without booting it: the image's root file system is mounted, read-only
// under a throw-away overlay or writable in place, with /proc, /sys, /dev
// and the host's DNS, in the private namespaces vmdeb builds in, so that
// every mount goes when the shell's process does.
package shell

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"vmdeb/internal/config"
)

// Kind is what an argument of vmdeb shell holds.
type Kind string

const (
	Directory Kind = "directory"        // a root file system as a directory
	Tarball   Kind = "tarball"          // a root file system tarball
	Squashfs  Kind = "squashfs"         // a squashfs root file system
	ISO       Kind = "live ISO"         // its live/filesystem.squashfs
	Raw       Kind = "raw disk image"   // its root partition, through a loop device
	Qcow2     Kind = "qcow2 disk image" // exported as raw by qemu-storage-daemon
)

// Target is the image a shell opens.
type Target struct {
	Kind   Kind
	Path   string // absolute
	Config string // the config file it was named by, if any
}

// Valid says what vmdeb shell takes, for messages.
const Valid = "a config file (its first output), a directory output, a root file system tarball, a squashfs, a live ISO, or a raw or qcow2 disk image"

// Detect says which kind of image arg is: a config (.yaml, .yml) stands
// for its first output as built (into outDir, when given, as vmdeb build
// --outdir writes it).
func Detect(arg, outDir string) (Target, error) {
	abs, err := filepath.Abs(arg)
	if err != nil {
		return Target{}, err
	}
	if ext := filepath.Ext(abs); ext == ".yaml" || ext == ".yml" {
		return fromConfig(abs, outDir)
	}
	return detectPath(abs)
}

// fromConfig is the first output of the config at path.
func fromConfig(path, outDir string) (Target, error) {
	s, err := config.Load(path)
	if err != nil {
		return Target{}, err
	}
	if outDir != "" {
		if err := s.SetOutputDir(outDir); err != nil {
			return Target{}, err
		}
	}
	if len(s.Outputs) == 0 {
		return Target{}, fmt.Errorf("%s: the config has no outputs", path)
	}
	out := s.Path(s.Outputs[0].Path)
	t, err := detectPath(out)
	if errors.Is(err, os.ErrNotExist) {
		return Target{}, fmt.Errorf("%s: its first output %s is not built yet (vmdeb build %s)", path, out, path)
	}
	if err != nil {
		return Target{}, err
	}
	t.Config = path
	return t, nil
}

func detectPath(p string) (Target, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return Target{}, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "filesystem.squashfs")); err == nil {
			// A squashfs output's directory.
			return Target{Kind: Squashfs, Path: filepath.Join(p, "filesystem.squashfs")}, nil
		}
		for _, d := range []string{"usr", "etc"} {
			if st, err := os.Lstat(filepath.Join(p, d)); err != nil || !st.IsDir() {
				return Target{}, fmt.Errorf("%s: a directory but not a root file system (no %s/ directory); vmdeb shell takes %s", p, d, Valid)
			}
		}
		return Target{Kind: Directory, Path: p}, nil
	}
	if !fi.Mode().IsRegular() {
		return Target{}, fmt.Errorf("%s: not a file or directory; vmdeb shell takes %s", p, Valid)
	}
	f, err := os.Open(p)
	if err != nil {
		return Target{}, err
	}
	defer f.Close()
	k, err := sniff(f, filepath.Base(p))
	if err != nil {
		return Target{}, fmt.Errorf("%s: %w", p, err)
	}
	return Target{Kind: k, Path: p}, nil
}

// compressed are the magic numbers of the compressors a tarball output
// may use.
var compressed = [][]byte{{0x1f, 0x8b}, []byte("\xfd7zXZ\x00"), {0x28, 0xb5, 0x2f, 0xfd}, []byte("BZh")}

// sniff reads an image's magic numbers; name (the file's) tells a
// compressed tarball from another compressed file.
func sniff(r io.ReaderAt, name string) (Kind, error) {
	head := make([]byte, 512)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	head = head[:n]
	id := make([]byte, 5)
	if _, err := r.ReadAt(id, 32769); err == nil && string(id) == "CD001" {
		return ISO, nil
	}
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return Qcow2, nil
	case bytes.HasPrefix(head, []byte("hsqs")):
		return Squashfs, nil
	case n >= 262 && string(head[257:262]) == "ustar":
		return Tarball, nil
	}
	for _, m := range compressed {
		if bytes.HasPrefix(head, m) {
			if strings.Contains(name, ".tar") || strings.HasSuffix(name, ".tgz") {
				return Tarball, nil
			}
			return "", fmt.Errorf("a compressed file but not a tarball (no .tar in its name); vmdeb shell takes %s", Valid)
		}
	}
	if n == 512 && head[510] == 0x55 && head[511] == 0xaa {
		return Raw, nil
	}
	return "", fmt.Errorf("not an image vmdeb knows (no partition table, squashfs, ISO 9660, qcow2 or tar header); vmdeb shell takes %s", Valid)
}

// CheckWritable refuses --writable where the image cannot be changed in
// place: a tarball, a squashfs and an ISO are written once, whole.
func (t Target) CheckWritable() error {
	switch t.Kind {
	case Directory, Raw, Qcow2:
		return nil
	}
	return fmt.Errorf("--writable: %s is a %s, which cannot be changed in place; --writable takes a directory output or a raw or qcow2 disk image (without it, changes go to a temporary overlay and are discarded)", t.Path, t.Kind)
}

// Rootless says whether the image opens without the host's root, in a
// user namespace: an ordinary user may not attach loop devices or mount
// the block file systems the others hold.
func (t Target) Rootless() bool { return t.Kind == Directory || t.Kind == Tarball }
