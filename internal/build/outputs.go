package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"vmdeb/internal/tempname"

	"golang.org/x/sys/unix"

	"vmdeb/internal/config"
)

// Output directories may be shared with other users (a 1777 directory, a
// CI runner's workspace): nothing vmdeb writes there goes through a name
// someone else could have prepared. New files are made under names
// nobody could have planted and renamed into place; a rename replaces a
// link at the final name instead of writing through it.

// Replacing is a new file that takes a final name when published.
type Replacing struct {
	*os.File
	dir   *tempDir
	final string
}

// CreateReplacing makes a new file (mode 0644) for path in a directory of
// vmdeb's own beside it (tempDir: held by a descriptor, so another user
// who owns path's directory cannot swap the file for a link before it is
// published); Publish renames it to path. It refuses a path that stands
// as anything but a regular file. The caller holds path's lock
// (LockOutputs, lockPath): a killed build's leftover is removed.
func CreateReplacing(path string) (*Replacing, error) {
	if err := checkFinal(path, false); err != nil {
		return nil, err
	}
	removeStale(path)
	t, err := newTempDir(filepath.Dir(path), tempname.Prefix(path))
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(int(t.dir.Fd()), filepath.Base(path), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err == nil {
		if err = unix.Fchmod(fd, 0o644); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, errors.Join(&os.PathError{Op: "create", Path: path, Err: err}, t.Remove())
	}
	return &Replacing{os.NewFile(uintptr(fd), t.Path(filepath.Base(path))), t, path}, nil
}

// Publish renames the file to its final name; the file stays open.
func (r *Replacing) Publish() error {
	err := r.dir.Publish(filepath.Base(r.final), filepath.Base(r.final))
	return errors.Join(err, r.dir.Remove())
}

// Discard removes the unpublished file.
func (r *Replacing) Discard() error { return r.dir.Remove() }

// checkFinal refuses a final name that is a link, a device or anything
// but a regular file (or, for a directory output, a directory).
func checkFinal(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	switch m := fi.Mode(); {
	case m.IsRegular() && !dir, m.IsDir() && dir:
		return nil
	case m&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: vmdeb writes only regular files and directories of its own there; remove it or choose another path", path)
	case m.IsDir():
		return fmt.Errorf("%s is a directory: remove it or choose another path", path)
	case m.IsRegular():
		return fmt.Errorf("%s is a file, and this output is a directory: remove it or choose another path", path)
	default:
		return fmt.Errorf("%s exists and is not a regular file (%s): remove it or choose another path", path, m.Type())
	}
}

// readNoFollow reads a file that must not be a link.
func readNoFollow(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link: remove it", path)
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: remove it", path)
	}
	return io.ReadAll(f)
}

// Written is one path a build writes, and what it is: What for people,
// Kind for the report (an output's type, or manifest, sha256sums, log,
// report).
type Written struct{ What, Path, Kind string }

// Writes lists every path a build of s writes (outputs, manifests,
// SHA256SUMS, the log at logPath, "" for the default, and extra: the
// report) and reads (the config and the files it names), for
// CheckOutputs.
func Writes(s *config.Spec, logPath string, extra ...Written) (writes, reads []Written) {
	for i, o := range s.Outputs {
		p := s.Path(o.Path)
		what := fmt.Sprintf("outputs[%d] (%s)", i, o.Type)
		writes = append(writes, Written{what, p, string(o.Type)})
		switch o.Type {
		case config.Directory:
		case config.Squashfs:
		default:
			spdx, cdx := sbomPaths(p)
			writes = append(writes, Written{what + "'s package manifest", manifestPath(p), "manifest"},
				Written{what + "'s SPDX SBOM", spdx, "sbom-spdx"},
				Written{what + "'s CycloneDX SBOM", cdx, "sbom-cyclonedx"},
				Written{what + "'s SHA256SUMS", filepath.Join(filepath.Dir(p), "SHA256SUMS"), "sha256sums"})
		}
	}
	if logPath == "" && len(s.Outputs) > 0 {
		logPath = DefaultLog(s)
	}
	if logPath != "" {
		writes = append(writes, Written{"the build log", logPath, "log"})
	}
	writes = append(writes, extra...)
	reads = append(reads, Written{What: "the config file", Path: s.File})
	for _, f := range s.Includes {
		reads = append(reads, Written{What: "a file the config includes", Path: f})
	}
	for _, r := range []struct{ what, p string }{
		{"customise (the hook)", s.Customise}, {"live.splash", s.Live.Splash},
		{"keyring", s.Keyring}, {"binfmt-handler", s.BinfmtHandler},
	} {
		if r.p != "" {
			reads = append(reads, Written{What: r.what, Path: s.Path(r.p)})
		}
	}
	for i, c := range s.CustomPackages {
		reads = append(reads, Written{What: fmt.Sprintf("custom-packages[%d]", i), Path: s.Path(c)})
	}
	for i, o := range s.Outputs {
		if o.ImageHook != "" {
			reads = append(reads, Written{What: fmt.Sprintf("outputs[%d].image-hook", i), Path: s.Path(o.ImageHook)})
		}
	}
	return writes, reads
}

// DefaultLog is the build log's name when --log does not give one.
func DefaultLog(s *config.Spec) string {
	return filepath.Join(filepath.Dir(s.Path(s.Outputs[0].Path)), s.Name+".build.log")
}

// CheckOutputs refuses a config whose written paths collide with each
// other or with a file the build reads — compared cleaned and with links
// resolved, so `//`, `..` and linked directories do not hide a collision
// — and final names that are links or special files. extra are more
// files the build writes (the report).
func CheckOutputs(s *config.Spec, logPath string, extra ...Written) error {
	writes, reads := Writes(s, logPath, extra...)
	var errs []error
	type seen struct {
		Written
		write bool
	}
	by := map[string]seen{}
	add := func(w Written, write bool) {
		r := Resolve(w.Path)
		if full, err := filepath.EvalSymlinks(w.Path); err == nil && !write {
			r = full // a file read may be reached through a link
		}
		if prev, ok := by[r]; ok {
			shared := prev.write && write && prev.What != w.What &&
				sameKind(prev.What, w.What) // two outputs in one directory share SHA256SUMS; one stem shares a manifest
			if !shared && !(prev.What == w.What) && (prev.write || write) {
				errs = append(errs, fmt.Errorf("%s: %s (%s) and %s (%s) are the same file%s", s.File, prev.What, prev.Path, w.What, w.Path, sameNote(prev.Path, w.Path)))
			}
			return
		}
		by[r] = seen{w, write}
	}
	for _, w := range writes {
		add(w, true)
	}
	for _, w := range reads {
		add(w, false)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, o := range s.Outputs {
		isDir := o.Type == config.Directory || o.Type == config.Squashfs
		p := s.Path(o.Path)
		if err := checkFinal(p, isDir); err != nil {
			errs = append(errs, fmt.Errorf("%s: outputs[%d]: %w", s.File, i, err))
		}
		if !isDir {
			continue
		}
		root := Resolve(p)
		for _, k := range keys {
			if strings.HasPrefix(k, root+"/") {
				errs = append(errs, fmt.Errorf("%s: %s (%s) lies inside outputs[%d] (%s), a directory the build makes", s.File, by[k].What, by[k].Path, i, p))
			}
		}
	}
	for _, w := range writes {
		switch w.Kind {
		case "manifest", "sbom-spdx", "sbom-cyclonedx", "sha256sums", "log", "report":
			if err := checkFinal(w.Path, false); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", s.File, w.What, err))
			}
		}
	}
	if len(errs) > 0 {
		return &PreflightError{errors.Join(errs...)}
	}
	return nil
}

// sameKind: SHA256SUMS with SHA256SUMS, manifest with manifest, an SBOM
// with an SBOM of its form.
func sameKind(a, b string) bool {
	for _, k := range []string{"'s SHA256SUMS", "'s package manifest", "'s SPDX SBOM", "'s CycloneDX SBOM"} {
		if strings.HasSuffix(a, k) && strings.HasSuffix(b, k) {
			return true
		}
	}
	return false
}

func sameNote(a, b string) string {
	if filepath.Clean(a) == filepath.Clean(b) {
		return ""
	}
	return " (" + Resolve(a) + ")"
}

// Resolve makes p absolute and clean, with the links of its directory's
// longest existing leading part resolved (the rest does not exist yet).
// The final name is not followed: vmdeb never writes through it (a link
// there is refused by checkFinal).
func Resolve(p string) string {
	p, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if p == "/" {
		return p
	}
	rest := []string{filepath.Base(p)}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				r = filepath.Join(r, rest[i])
			}
			return r
		}
		if d == "/" || d == "." {
			return p
		}
		rest = append(rest, filepath.Base(d))
	}
}

// Locks are held for a build's lifetime, one per written path: a second
// build of the same output fails at once instead of deleting the first
// one's temporary files and truncating its log. They are flock(2) locks,
// which the kernel releases when the holder dies, on files in the
// builder's private directory under /run/lock (nothing beside the outputs).
type Locks struct{ files []*os.File }

// Release lets go of every lock.
func (l *Locks) Release() {
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
}

// LockOutputs takes the locks of every path a build of s writes, or says
// which process holds one.
func LockOutputs(s *config.Spec, logPath string, extra ...Written) (*Locks, error) {
	writes, _ := Writes(s, logPath, extra...)
	l := &Locks{}
	done := map[string]bool{}
	for _, w := range writes {
		if strings.HasSuffix(w.What, "'s SHA256SUMS") {
			continue // shared by builds into one directory; locked while updated
		}
		r := Resolve(w.Path)
		if done[r] {
			continue
		}
		done[r] = true
		f, err := lockFile(r, false)
		if err != nil {
			l.Release()
			return nil, fmt.Errorf("%s (%s): %w", w.Path, w.What, err)
		}
		l.files = append(l.files, f)
		// What a killed build of this path left goes now, not only when
		// this build gets to write it: it may stop before that.
		removeStale(r)
	}
	return l, nil
}

// lockPath takes the lock of path, waiting for it if wait, and returns
// its release.
func lockPath(path string, wait bool) (func(), error) {
	f, err := lockFile(Resolve(path), wait)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// lockDir is where the lock files live.
var lockDir = "/run/lock"

func lockFile(resolved string, wait bool) (*os.File, error) {
	dir := lockDir
	if _, err := os.Stat(dir); err != nil {
		dir = os.TempDir()
	}
	private, err := PrivateDir(dir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(resolved))
	name := filepath.Join(private, hex.EncodeToString(sum[:12])+".lock")
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(fd, how); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.Fields(string(holder))
			who := "another vmdeb build"
			if len(pid) > 0 {
				who += " (PID " + pid[0] + ")"
			}
			return nil, fmt.Errorf("%s is writing this path now; wait for it to finish or choose another path", who)
		}
		return nil, err
	}
	// Who holds it, for the next build's message: the PID on the host.
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+resolved+"\n"), 0)
	return f, nil
}
