package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"vmdeb/internal/bytesize"

	"vmdeb/internal/buildlog"
)

// fsFits reports whether a file system fs of part bytes holds u.
func fsFits(u Usage, part int64, fs string) bool {
	switch fs {
	case "btrfs":
		return part > 0 && btrfsNeed(u) <= part
	case "xfs":
		return part >= xfsMinPart && xfsNeed(u, part) <= part
	}
	return extFits(u, part, fs)
}

// fsMinSize is the smallest partition, in whole MiB, whose file system fs
// holds u.
func fsMinSize(u Usage, fs string) int64 {
	switch fs {
	case "btrfs":
		return roundUp(btrfsNeed(u), mib)
	case "xfs":
		p := max(xfsMinPart, roundUp(u.Bytes, mib))
		for !fsFits(u, p, fs) {
			p += mib
		}
		return p
	}
	return extMinSize(u, fs)
}

// btrfsNeed is at least what mkfs.btrfs --rootdir itself reserves for u
// before it copies anything (btrfs-progs' btrfs_mkfs_size_dir: the data,
// metadata of 16 KiB per inode plus an eighth of the data, twice over for
// DUP, and its minimal device): on a smaller file it would silently grow
// the file past the partition.
func btrfsNeed(u Usage) int64 {
	return u.Bytes + 2*(u.Inodes*16384+u.Bytes/8) + 128*mib
}

// xfsMinPart is the smallest XFS mkfs.xfs makes since xfsprogs 5.19.
const xfsMinPart = 300 * mib

// xfsNeed estimates what an XFS of part bytes needs for u: the data, the
// inodes (512 bytes each), the log (64 MiB from xfsprogs 5.19 on) and the
// per-allocation-group headers and free-space trees.
func xfsNeed(u Usage, part int64) int64 {
	return u.Bytes + u.Bytes/20 + u.Inodes*512 + 64*mib + part/64 + 16*mib
}

// mkfsFromFile makes a file system that its tool can only write to a
// whole device or file (mkfs.btrfs, mkfs.xfs): into a sparse file of the
// partition's size, checked there, then copied into the image with its
// holes kept. No loop device: the tools take the file itself.
func (b *builder) mkfsFromFile(p Part, dir string) error {
	f := filepath.Join(b.tmp, "fs-"+p.Name)
	if err := sparseFile(f, p.Bytes()); err != nil {
		return err
	}
	var mk, check []string
	switch p.FS {
	case "btrfs":
		mk, check = btrfsArgs(p, dir, f), []string{"btrfs", "check", "--readonly", f}
	case "xfs":
		mk, check = xfsArgs(p, dir, f), []string{"xfs_repair", "-n", "-f", f}
	default:
		return fmt.Errorf("no file system maker for %s", p.FS)
	}
	err := b.runTool(mk[0], mk[1:])
	if err != nil && noSpace(b.log.LastLines()) {
		return fmt.Errorf("%s does not fit in its %s partition (vmdeb's estimate was too low): make the image or partition larger: %w", p.Mount, bytesize.Format(p.Bytes()), err)
	} else if err != nil {
		return err
	}
	// mkfs.btrfs grows a file too small for its estimate instead of failing.
	if fi, err := os.Stat(f); err != nil {
		return err
	} else if fi.Size() != p.Bytes() {
		return fmt.Errorf("%s does not fit in its %s partition: %s wanted %s; make the image larger", p.Mount, bytesize.Format(p.Bytes()), mk[0], bytesize.Format(fi.Size()))
	}
	if err := b.runTool(check[0], check[1:]); err != nil {
		return fmt.Errorf("the new %s file system fails its check: %w", p.FS, err)
	}
	if err := copySparseFile(b.ctx, filepath.Join(b.tmp, b.img), p.Offset(), f); err != nil {
		return err
	}
	return os.Remove(f)
}

// btrfsArgs is mkfs.btrfs making the file system of p from dir in file.
// Metadata keeps mkfs's default (DUP on one device).
func btrfsArgs(p Part, dir, file string) []string {
	return []string{"mkfs.btrfs", "--quiet", "--force", "--nodiscard", "--uuid", p.UUID, "--rootdir", dir, file}
}

// xfsArgs is mkfs.xfs making the file system of p from dir in file:
// -p DIR copies a directory tree (xfsprogs 6.17 and later).
func xfsArgs(p Part, dir, file string) []string {
	return []string{"mkfs.xfs", "-q", "-f", "-K", "-m", "uuid=" + p.UUID, "-p", dir, file}
}

func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	return errors.Join(err, f.Close())
}

// CheckFS says why this host cannot make a root file system of type fs
// without a mount, or returns nil. Only xfs depends on the host's tool
// version: mkfs.xfs populates a file system from a directory from
// xfsprogs 6.17 on (-p DIR); older ones read -p as a prototype file, which
// loses extended attributes (file capabilities) and hard links.
func CheckFS(fs Filesystem) error {
	if fs != XFS {
		return nil
	}
	xfsProbe.Do(func() { xfsProbe.err = probeXFS() })
	return xfsProbe.err
}

var xfsProbe struct {
	sync.Once
	err error
}

// probeXFS tries mkfs.xfs -p on an empty directory and a sparse file: the
// only reliable test of what the installed version can do.
func probeXFS() error {
	const need = "xfs needs mkfs.xfs from xfsprogs 6.17 or later (its -p takes a directory, so the file system is made without mounting it)"
	mkfs, err := buildlog.LookPath("mkfs.xfs")
	if err != nil {
		return fmt.Errorf("%s; this host has no mkfs.xfs: use ext4 or btrfs, or build on a host with a newer xfsprogs", need)
	}
	version := "an older xfsprogs"
	if out, err := exec.Command(mkfs, "-V").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 0 {
			version = "xfsprogs " + f[len(f)-1]
		}
	}
	tmp, err := os.MkdirTemp("", "vmdeb-xfs-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir, file := filepath.Join(tmp, "d"), filepath.Join(tmp, "f")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := sparseFile(file, 512*mib); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if exec.CommandContext(ctx, mkfs, "-q", "-f", "-K", "-p", dir, file).Run() != nil {
		return fmt.Errorf("%s; this host has %s: use ext4 or btrfs, or build on a host with a newer xfsprogs", need, version)
	}
	return nil
}

// fsTools are the host programs (and their packages) that make and check
// a root file system of each type.
var fsTools = map[string][][2]string{
	"btrfs": {{"mkfs.btrfs", "btrfs-progs"}, {"btrfs", "btrfs-progs"}},
	"xfs":   {{"mkfs.xfs", "xfsprogs"}, {"xfs_repair", "xfsprogs"}},
}

// fsckPass is the sixth fstab field for a root of type fs: btrfs and xfs
// are not checked at boot (their fsck.* do nothing, as the Debian
// installer's fstab says with 0).
func fsckPass(fs string, root bool) int {
	switch {
	case fs == string(Btrfs) || fs == string(XFS):
		return 0
	case root:
		return 1
	}
	return 2
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// linksKept reports whether the maker of file system fs copies hard links
// as they are. mkfs.btrfs --rootdir of bookworm's btrfs-progs (6.2) does
// not: it writes each name as a new inode that keeps the source's link
// count, which btrfs check reports as "link count wrong". The staging tree
// is then a copy whose hard links are broken up (mkfs.xfs -p likewise, not
// knowing how a given version handles them).
func linksKept(fs string) bool { return fs != string(Btrfs) && fs != string(XFS) }

// breakLinks gives every multiply linked file of the staged root its own
// copy, for file system makers that do not handle hard links.
func (b *builder) breakLinks() error {
	if linksKept(string(b.o.RootFS)) {
		return nil
	}
	var linked []string
	err := filepath.WalkDir(b.stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Sys().(*syscall.Stat_t).Nlink > 1 {
			linked = append(linked, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range linked {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		// cp -p keeps mode, owner and times; --preserve=xattr the file
		// capabilities. The copy replaces the name by a rename.
		tmp := p + ".vmdeb-unlink"
		if err := b.log.Run(b.ctx, buildlog.Cmd{Name: "cp", Args: []string{"-p", "--preserve=xattr", "--", p, tmp}}); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	if len(linked) > 0 {
		b.log.Printf("%d hard-linked files copied apart (%s keeps no hard links)", len(linked), b.o.RootFS)
	}
	return nil
}
