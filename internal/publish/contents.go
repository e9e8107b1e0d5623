package publish

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// The medium's file list (NAME.contents), as Debian publishes one
// beside each live ISO, made from the published copy:
//
//	live-iso  the regular files on the ISO 9660 file system (Rock Ridge
//	          names), one absolute path a line, sorted (xorriso -find)
//	tarball   the members as tar -t lists them, in the archive's order
//	squashfs  filesystem.squashfs's files, symbolic links and empty
//	          directories, one absolute path a line (unsquashfs -lc)
//
// Disk images and ext4 file systems get none: listing them means
// mounting or parsing a partitioned image, and their .packages says
// what is in them. Nor does an oci archive, whose members are blobs
// named by digest.

// listerFor is how a type's file list is made; nil: it has none.
func listerFor(typ string) func(context.Context, string) ([]byte, error) {
	switch typ {
	case "live-iso":
		return listISO
	case "tarball":
		return listTar
	}
	return nil
}

// Tools are the programs the file lists need, by output type.
var Tools = map[string]string{"live-iso": "xorriso", "tarball": "tar", "squashfs": "unsquashfs"}

func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	return out, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func listISO(ctx context.Context, file string) ([]byte, error) {
	out, err := output(ctx, "xorriso", "-abort_on", "FAILURE", "-indev", "stdio:"+file, "-find", "/", "-type", "f")
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" {
			continue
		}
		p, ok := unquote(l)
		if !ok {
			return nil, fmt.Errorf("xorriso -find on %s: cannot read the line %q", file, l)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return lines(paths), nil
}

// unquote undoes xorriso's shell quoting of a path: 'a'"'"'b' is a'b.
func unquote(s string) (string, bool) {
	var b strings.Builder
	for s != "" {
		q := s[0]
		if q != '\'' && q != '"' {
			return "", false
		}
		end := strings.IndexByte(s[1:], q)
		if end < 0 {
			return "", false
		}
		b.WriteString(s[1 : 1+end])
		s = s[end+2:]
	}
	return b.String(), true
}

func listTar(ctx context.Context, file string) ([]byte, error) {
	return output(ctx, "tar", "-tf", file)
}

func listSquashfs(ctx context.Context, file string) ([]byte, error) {
	out, err := output(ctx, "unsquashfs", "-lc", "-d", "/squashfs-root", file)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, l := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(l, "/squashfs-root/"); ok {
			paths = append(paths, "/"+p)
		}
	}
	sort.Strings(paths)
	return lines(paths), nil
}

func lines(l []string) []byte {
	if len(l) == 0 {
		return nil
	}
	return []byte(strings.Join(l, "\n") + "\n")
}
