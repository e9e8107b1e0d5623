package build

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/disk"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
)

// ext4Stage writes the root file system as a bare ext4 image (no
// partition table, no boot loader): for a kernel booted directly, a
// container, or dd onto a partition. mke2fs -d fills it from the root.
type ext4Stage struct {
	outputStage
	out config.Output
}

func (ext4Stage) Name() string { return "ext4" }

// ext4Usage is what a tree takes on an ext4 file system with 4 KiB blocks.
type ext4Usage = disk.Usage

// measureExt4 walks root as the disk output measures its partitions: file
// and directory blocks, rounded up to 4 KiB, long symbolic links, and one
// inode per name (hard links counted once).
func measureExt4(ctx context.Context, root string) (ext4Usage, error) {
	return disk.Measure(ctx, root)
}

// ext4Inodes leaves a tenth more inodes than the tree has, and at least
// mke2fs's default of one per 16 KiB.
func ext4Inodes(u ext4Usage, size int64) int64 {
	return max(size/16384, u.Inodes+u.Inodes/10+64)
}

// ext4Size is the image's size: the config's, or the content plus a
// quarter and 64 MiB (the journal, inode tables, group metadata and room
// for a few changes), in whole MiB. need is the least it can hold u in.
func ext4Size(u ext4Usage, given int64) (size, need int64) {
	const mib = 1 << 20
	need = u.Bytes + u.Bytes/50 + (u.Inodes+u.Inodes/10+64)*256 + 8*mib
	if given > 0 {
		return given / 4096 * 4096, need
	}
	return (u.Bytes + u.Bytes/4 + u.Inodes*256 + 64*mib + mib - 1) / mib * mib, need
}

// ext4UUID is the file system's UUID under SOURCE_DATE_EPOCH, derived from
// the image's name and the epoch; "" (mke2fs picks a random one) without.
func ext4UUID(name string, epoch int64) string {
	if epoch <= 0 {
		return ""
	}
	b := sha256.Sum256([]byte("vmdeb-ext4\x00" + name + "\x00" + strconv.FormatInt(epoch, 10)))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Ext4Args is mke2fs's command line for an ext4 image out of size bytes
// filled from root with room for inodes files. With a uuid (a reproducible
// build) the directory hash seed is set from it too, so the same tree
// gives the same bytes. The image file is new and sparse: mke2fs need not
// zero it, and it stays sparse.
func Ext4Args(root, out string, size, inodes int64, uuid string) []string {
	ext := []string{"nodiscard", "assume_storage_prezeroed=1", "root_owner=0:0"}
	a := []string{"-F", "-q", "-t", "ext4", "-b", "4096", "-I", "256", "-N", strconv.FormatInt(inodes, 10)}
	if uuid != "" {
		a = append(a, "-U", uuid)
		ext = append(ext, "hash_seed="+uuid)
	}
	return append(a, "-E", strings.Join(ext, ","), "-d", root, out, strconv.FormatInt(size/4096, 10))
}

// ext4DateScript is debugfs's commands that set the access, change and
// creation times of every inode of the tree at root (by its path in the
// file system) to the epoch: mke2fs -d copies them from the tree, where
// the kernel set them when the build wrote the files.
func ext4DateScript(ctx context.Context, root string, epoch int64) (string, error) {
	var b strings.Builder
	e := strconv.FormatInt(epoch, 10)
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rel, _ := filepath.Rel(root, p)
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		if strings.ContainsAny(name, "\"\n\\") {
			return fmt.Errorf("%s: a name debugfs cannot take; the ext4 output cannot set its dates", name)
		}
		for _, f := range []string{"atime", "ctime", "crtime"} {
			fmt.Fprintf(&b, "sif \"%s\" %s @%s\nsif \"%s\" %s_extra 0\n", name, f, e, name, f)
		}
		return nil
	})
	return b.String(), err
}

func (s ext4Stage) Run(ctx context.Context, st *State) error {
	out := st.Plan.Spec.Path(s.out.Path)
	tmp, err := st.temp(out)
	if err != nil {
		return err
	}
	u, err := measureExt4(ctx, st.Rootfs)
	if err != nil {
		return err
	}
	size, need := ext4Size(u, s.out.Size.Bytes)
	if size < need {
		return fmt.Errorf("ext4 image %s: the root's files need about %s, more than size: %s", out, bytesize.Format(need), bytesize.Format(size))
	}
	epoch := st.Plan.SourceDateEpoch
	var env []string
	if epoch > 0 {
		e := strconv.FormatInt(epoch, 10)
		env = []string{"SOURCE_DATE_EPOCH=" + e, "E2FSPROGS_FAKE_TIME=" + e}
	}
	// The image's own mke2fs.conf names the features its e2fsck knows; the
	// host's may enable newer ones that an older suite's fsck refuses.
	mkEnv := env
	if fi, err := os.Stat(filepath.Join(st.Rootfs, "etc/mke2fs.conf")); err == nil && fi.Mode().IsRegular() {
		mkEnv = append(append([]string{}, env...), "MKE2FS_CONFIG="+filepath.Join(st.Rootfs, "etc/mke2fs.conf"))
	}
	st.Log.Printf("writing %s (ext4, %s)", out, bytesize.Format(size))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	args := Ext4Args(st.Rootfs, tmp, size, ext4Inodes(u, size), ext4UUID(st.Plan.Spec.Name, epoch))
	if err := st.Log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("mke2fs"), Args: args, Env: mkEnv}); err != nil {
		return fmt.Errorf("ext4 image %s: %w", out, err)
	}
	if epoch > 0 {
		script, err := ext4DateScript(ctx, st.Rootfs, epoch)
		if err != nil {
			return err
		}
		cf := filepath.Join(filepath.Dir(tmp), "debugfs-dates")
		if err := os.WriteFile(cf, []byte(script), 0o600); err != nil {
			return err
		}
		err = st.Log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("debugfs"), Args: []string{"-w", "-f", cf, tmp}, Env: env, Stdout: io.Discard})
		os.Remove(cf)
		if err != nil {
			return fmt.Errorf("ext4 image %s: setting dates: %w", out, err)
		}
	}
	if err := st.Log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("e2fsck"), Args: []string{"-f", "-n", tmp}, Env: env}); err != nil {
		return fmt.Errorf("ext4 image %s: e2fsck finds it damaged: %w", out, err)
	}
	return st.commit(tmp, out, config.Ext4)
}
