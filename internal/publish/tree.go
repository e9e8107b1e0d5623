package publish

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// existingTree lists the files of the tree at to: none when it does not
// exist or is empty; with add, those of the tree to add to; without it a
// non-empty to is refused.
func existingTree(to string, add bool) (map[string]bool, error) {
	files := map[string]bool{}
	fi, err := os.Lstat(to)
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("--to %s: exists and is not a directory", to)
	}
	ents, err := os.ReadDir(to)
	if err != nil {
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	if len(ents) == 0 {
		return files, nil
	}
	if !add {
		return nil, fmt.Errorf("--to %s: exists and is not empty: give an empty or new directory, or --add to add these jobs' files to the tree in it", to)
	}
	err = filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(to, p)
		switch {
		case d.IsDir(), d.Type()&fs.ModeSymlink != 0:
		case d.Type().IsRegular():
			files[filepath.ToSlash(rel)] = true
		default:
			return fmt.Errorf("%s: neither a file, a directory nor a symbolic link", p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	return files, nil
}

// lockTree keeps a second vmdeb publish --add from changing the tree at
// to while this one does (each would replace the tree with its own
// additions, losing the other's): an flock(2) on the tree's directory,
// taken before it is read and held until the new tree replaced it. A
// tree swapped out meanwhile is a new directory, which is checked.
func lockTree(to string) (unlock func(), err error) {
	f, err := os.Open(to)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("--to %s: another vmdeb publish --add is changing this tree; try again when it is done", to)
		}
		return nil, fmt.Errorf("--to %s: lock: %w", to, err)
	}
	held, err1 := f.Stat()
	now, err2 := os.Stat(to)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, fmt.Errorf("--to %s: the tree was replaced by another vmdeb publish as this one started; try again", to)
	}
	return func() { f.Close() }, nil
}

// tree is the release tree being made in a directory beside its final
// name.
type tree struct {
	to, tmp  string
	created  string // the first of to's parents publish made ("": none)
	progress io.Writer
	sums     map[string]digests // by path in the tree
}

type digests struct {
	size           int64
	sha256, sha512 string
}

func newTree(to string, progress io.Writer) (*tree, error) {
	parent := filepath.Dir(to)
	created := ""
	for d := parent; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		created = d
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(to)+".publish-")
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err != nil {
		if created != "" {
			os.RemoveAll(created)
		}
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	return &tree{to: to, tmp: tmp, created: created, progress: progress, sums: map[string]digests{}}, nil
}

func (t *tree) say(format string, a ...any) {
	if t.progress != nil {
		fmt.Fprintf(t.progress, format+"\n", a...)
	}
}

// discard removes the unfinished tree (and the parents publish made).
func (t *tree) discard() error {
	err := os.RemoveAll(t.tmp)
	if t.created != "" {
		err = errors.Join(err, os.RemoveAll(t.created))
	}
	return err
}

func (t *tree) abs(rel string) string { return filepath.Join(t.tmp, filepath.FromSlash(rel)) }

// write fills the tree: the files of the existing tree (with add), the
// jobs' files checked against their reports, the file lists, the
// checksum files and their signatures.
func (t *tree) write(ctx context.Context, s *Summary, items []*item, existing map[string]bool, o Options) error {
	if len(existing) > 0 {
		t.say("publish: taking the %d files of %s", len(existing), t.to)
		if err := t.takeExisting(); err != nil {
			return err
		}
	}
	touched := map[string]bool{}
	var mismatch []error
	t.say("publish: %d files of %d jobs into %s", len(items), len(s.Jobs), t.to)
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		touched[path.Dir(it.Path)] = true
		if it.Src == "" {
			continue
		}
		f, err := t.place(it, s)
		if err != nil {
			var m *mismatchError
			if errors.As(err, &m) {
				mismatch = append(mismatch, err)
				continue
			}
			return err
		}
		s.Files = append(s.Files, f)
	}
	if err := refused(mismatch); err != nil {
		return err
	}
	for _, it := range items {
		if it.List == nil {
			continue
		}
		t.say("publish: listing the files of %s", it.From)
		data, err := it.List(ctx, t.abs(it.From))
		if err != nil {
			return fmt.Errorf("the file list of %s (job %s): %w", it.From, it.Job.ID, err)
		}
		f, err := t.generate(it.Path, data)
		if err != nil {
			return err
		}
		f.Type, f.Job = it.Type, it.Job.ID
		s.Files = append(s.Files, f)
	}
	dirs := make([]string, 0, len(touched))
	for d := range touched {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		files, err := t.writeSums(ctx, s, d, existing, o)
		if err != nil {
			return err
		}
		dir := Directory{Path: d, Files: files}
		if o.SignKey != "" {
			if err := t.sign(ctx, s, d, o.SignKey); err != nil {
				return err
			}
			dir.Signed = true
		}
		s.Directories = append(s.Directories, dir)
	}
	return nil
}

// takeExisting links (or copies) the existing tree's files into the new
// one, so that the new tree replaces it whole.
func (t *tree) takeExisting() error {
	return filepath.WalkDir(t.to, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(t.to, p)
		dst := filepath.Join(t.tmp, rel)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(dst, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			_, err := linkOrCopy(p, dst, nil)
			return err
		}
	})
}

type mismatchError struct{ error }

// place puts a job's file into the tree and checks the tree's copy
// against what the job's report recorded.
func (t *tree) place(it *item, s *Summary) (File, error) {
	dst := t.abs(it.Path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return File{}, err
	}
	t.say("publish: %s", it.Path)
	var d digests
	method, err := linkOrCopy(it.Src, dst, &d)
	if err != nil {
		return File{}, fmt.Errorf("job %s: %s: %w", it.Job.ID, it.Src, err)
	}
	if method == "link" {
		// The tree's file is the job's: hash what was published.
		if d, err = hashFile(dst); err != nil {
			return File{}, err
		}
	}
	if it.Size != nil && d.size != *it.Size || it.SHA256 != "" && d.sha256 != it.SHA256 {
		want := "SHA256 " + it.SHA256
		if it.Size != nil {
			want = fmt.Sprintf("size %d, %s", *it.Size, want)
		}
		return File{}, &mismatchError{fmt.Errorf("job %s: %s is size %d, SHA256 %s, but %s recorded %s: the file changed after its build",
			it.Job.ID, it.Src, d.size, d.sha256, recorder(it), want)}
	}
	t.sums[it.Path] = d
	if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm()&0o004 == 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%s is not readable by all (mode %04o, as its job wrote it): set mode: \"0644\" on the output in the config to publish it readable", it.Path, fi.Mode().Perm()))
	}
	return File{Path: it.Path, Type: it.Type, Job: it.Job.ID, Source: it.Src, Size: d.size, SHA256: d.sha256, SHA512: d.sha512, Method: method}, nil
}

func recorder(it *item) string {
	if it.Size == nil {
		return filepath.Join(filepath.Dir(it.Src), SHA256Sums)
	}
	return "its report " + it.Job.Report
}

// generate writes a file publish makes.
func (t *tree) generate(rel string, data []byte) (File, error) {
	dst := t.abs(rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return File{}, err
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return File{}, err
	}
	d := digestOf(data)
	t.sums[rel] = d
	return File{Path: rel, Size: d.size, SHA256: d.sha256, SHA512: d.sha512, Method: "generated"}, nil
}

// writeSums writes dir's SHA256SUMS and SHA512SUMS, as sha256sum and
// sha512sum write them, for every file in it. Files of the tree it adds
// to are checked against the checksum files they had; their signatures
// are dropped (the files they signed change).
func (t *tree) writeSums(ctx context.Context, s *Summary, dir string, existing map[string]bool, o Options) (int, error) {
	old256, _ := readSums(filepath.Join(t.to, filepath.FromSlash(dir), SHA256Sums))
	old512, _ := readSums(filepath.Join(t.to, filepath.FromSlash(dir), SHA512Sums))
	ents, err := os.ReadDir(t.abs(dir))
	if err != nil {
		return 0, err
	}
	var names []string
	for _, e := range ents {
		if reserved(e.Name()) {
			if strings.HasSuffix(e.Name(), SignSuffix) && o.SignKey == "" {
				s.Notes = append(s.Notes, fmt.Sprintf("%s/%s was removed: the checksum file it signed changed (give --sign-key to sign again)", dir, e.Name()))
			}
			if err := os.Remove(filepath.Join(t.abs(dir), e.Name())); err != nil {
				return 0, err
			}
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		rel := path.Join(dir, e.Name())
		if _, ok := t.sums[rel]; !ok {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			d, err := hashFile(t.abs(rel))
			if err != nil {
				return 0, err
			}
			if h, ok := old256[e.Name()]; ok && h != d.sha256 || old512[e.Name()] != "" && old512[e.Name()] != d.sha512 {
				return 0, &RefusedError{fmt.Errorf("%s: does not match the tree's %s or %s: the tree changed after it was published",
					filepath.Join(t.to, filepath.FromSlash(rel)), SHA256Sums, SHA512Sums)}
			}
			if !existing[rel] {
				return 0, fmt.Errorf("%s: unexpected file in the new tree", rel)
			}
			t.sums[rel] = d
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, sum := range []struct{ name, typ string }{{SHA256Sums, "sha256sums"}, {SHA512Sums, "sha512sums"}} {
		var b strings.Builder
		for _, n := range names {
			d := t.sums[path.Join(dir, n)]
			h := d.sha256
			if sum.name == SHA512Sums {
				h = d.sha512
			}
			fmt.Fprintf(&b, "%s  %s\n", h, n)
		}
		f, err := t.generate(path.Join(dir, sum.name), []byte(b.String()))
		if err != nil {
			return 0, err
		}
		f.Type = sum.typ
		s.Files = append(s.Files, f)
	}
	return len(names), nil
}

// sign makes the detached, ASCII-armoured signatures of dir's checksum
// files, as Debian's SHA256SUMS.sign are, with the user's GnuPG.
func (t *tree) sign(ctx context.Context, s *Summary, dir, key string) error {
	for _, sum := range []string{SHA256Sums, SHA512Sums} {
		rel := path.Join(dir, sum)
		t.say("publish: signing %s with %s", rel, key)
		file := t.abs(rel)
		cmd := exec.CommandContext(ctx, "gpg", "--batch", "--no-tty", "--local-user", key, "--armor",
			"--output", file+SignSuffix, "--detach-sign", "--", file)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("signing %s with %s (%s): %w: %s", rel, key, gnupgHome(), err, lastLines(string(out), 5))
		}
		if err := os.Chmod(file+SignSuffix, 0o644); err != nil {
			return err
		}
		d, err := hashFile(file + SignSuffix)
		if err != nil {
			return err
		}
		s.Files = append(s.Files, File{Path: rel + SignSuffix, Type: "signature", Size: d.size, SHA256: d.sha256, SHA512: d.sha512, Method: "generated"})
	}
	return nil
}

// commit renames the finished tree into place. With add the old tree is
// swapped out in one step (renameat2 RENAME_EXCHANGE) and removed.
func (t *tree) commit(add bool) error {
	if !add {
		if err := os.Rename(t.tmp, t.to); err != nil {
			return fmt.Errorf("--to %s: %w", t.to, err)
		}
		return nil
	}
	err := unix.Renameat2(unix.AT_FDCWD, t.tmp, unix.AT_FDCWD, t.to, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		err = os.Rename(t.tmp, t.to) // there was no tree to add to
		if err != nil {
			return fmt.Errorf("--to %s: %w", t.to, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("--to %s: replacing the tree: %w", t.to, err)
	}
	// t.tmp is now the old tree, whose files the new one links.
	if err := os.RemoveAll(t.tmp); err != nil {
		return fmt.Errorf("the old tree, now %s: %w (the new one is in place)", t.tmp, err)
	}
	return nil
}

// linkOrCopy makes dst the same file as src: a hard link when both are
// on one file system (and the kernel lets this user link src), else a
// reflink, else a copy, whose digests are then d.
func linkOrCopy(src, dst string, d *digests) (string, error) {
	if err := os.Link(src, dst); err == nil {
		return "link", nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return "", err
	}
	method := "reflink"
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		method = "copy"
		h256, h512 := sha256.New(), sha512.New()
		n, err := io.Copy(io.MultiWriter(out, h256, h512), in)
		if err != nil {
			out.Close()
			return "", err
		}
		if d != nil {
			*d = digests{n, hexOf(h256), hexOf(h512)}
		}
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if d == nil {
		return method, nil
	}
	if method == "reflink" {
		*d, err = hashFile(dst)
	}
	return method, err
}

func hashFile(p string) (digests, error) {
	f, err := os.Open(p)
	if err != nil {
		return digests{}, err
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(h256, h512), f)
	if err != nil {
		return digests{}, fmt.Errorf("%s: %w", p, err)
	}
	return digests{n, hexOf(h256), hexOf(h512)}, nil
}

func digestOf(data []byte) digests {
	a, b := sha256.Sum256(data), sha512.Sum512(data)
	return digests{int64(len(data)), hex.EncodeToString(a[:]), hex.EncodeToString(b[:])}
}

func hexOf(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
