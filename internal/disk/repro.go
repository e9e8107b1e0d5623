package disk

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"vmdeb/internal/chroot"
)

// clampDates sets, under SOURCE_DATE_EPOCH, the dates of every file of the
// staged trees newer than the epoch to the epoch: the files written for
// the image (fstab, GRUB's) get the same dates on every build.
func (b *builder) clampDates() error {
	if b.o.SourceDateEpoch <= 0 {
		return nil
	}
	for _, d := range []string{b.stage, b.bootDir, b.espDir} {
		if d == "" {
			continue
		}
		if _, err := chroot.ClampTimes(d, b.o.SourceDateEpoch); err != nil {
			return err
		}
	}
	return nil
}

// fixExtDates sets, under SOURCE_DATE_EPOCH, the access, change and
// creation times of every inode in use of the ext file system at p's
// offset to the epoch. mke2fs -d copies each file's access and change
// times from the staged tree, where the kernel set them when the build
// wrote the files; debugfs puts in the epoch instead.
func (b *builder) fixExtDates(p Part) error {
	if b.o.SourceDateEpoch <= 0 {
		return nil
	}
	dev := b.img + "?offset=" + strconv.FormatInt(p.Offset(), 10)
	out, err := b.output("dumpe2fs", []string{dev})
	if err != nil {
		return err
	}
	inodes, err := usedInodes(out)
	if err != nil {
		return fmt.Errorf("reading the inode bitmaps: %w", err)
	}
	var cmds strings.Builder
	e := strconv.FormatInt(b.o.SourceDateEpoch, 10)
	for _, ino := range inodes {
		for _, f := range []string{"atime", "ctime", "crtime"} {
			fmt.Fprintf(&cmds, "sif <%d> %s @%s\nsif <%d> %s_extra 0\n", ino, f, e, ino, f)
		}
	}
	cf := filepath.Join(b.tmp, "debugfs-dates")
	if err := os.WriteFile(cf, []byte(cmds.String()), 0o600); err != nil {
		return err
	}
	defer os.Remove(cf)
	if _, err := b.outputQuiet("debugfs", []string{"-w", "-f", cf, dev}); err != nil {
		return err
	}
	b.log.Logf("disk: dates of %d inodes set to SOURCE_DATE_EPOCH", len(inodes))
	return nil
}

var (
	groupRE = regexp.MustCompile(`^Group (\d+):`)
	freeRE  = regexp.MustCompile(`^\s+Free inodes:\s*(.*)$`)
)

// usedInodes reads dumpe2fs's report: the root directory's inode and every
// inode from the first non-reserved one that no group lists as free.
func usedInodes(report string) ([]int, error) {
	var perGroup, count, first int
	free := map[int][][2]int{}
	group := -1
	sc := bufio.NewScanner(strings.NewReader(report))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "Inodes per group:"); ok {
			perGroup, _ = strconv.Atoi(strings.TrimSpace(v))
		} else if v, ok := strings.CutPrefix(l, "Inode count:"); ok {
			count, _ = strconv.Atoi(strings.TrimSpace(v))
		} else if v, ok := strings.CutPrefix(l, "First inode:"); ok {
			first, _ = strconv.Atoi(strings.TrimSpace(v))
		} else if m := groupRE.FindStringSubmatch(l); m != nil {
			group, _ = strconv.Atoi(m[1])
		} else if m := freeRE.FindStringSubmatch(l); m != nil && group >= 0 {
			free[group] = nil // listed, possibly empty
			for _, r := range strings.Split(m[1], ",") {
				r = strings.TrimSpace(r)
				if r == "" {
					continue
				}
				lo, hi, isRange := strings.Cut(r, "-")
				a, err := strconv.Atoi(lo)
				if err != nil {
					return nil, fmt.Errorf("free inodes %q", r)
				}
				z := a
				if isRange {
					if z, err = strconv.Atoi(hi); err != nil {
						return nil, fmt.Errorf("free inodes %q", r)
					}
				}
				free[group] = append(free[group], [2]int{a, z})
			}
		}
	}
	if perGroup == 0 || count == 0 || first == 0 || len(free) != (count+perGroup-1)/perGroup {
		return nil, fmt.Errorf("not a dumpe2fs report (%d inodes, %d per group, first %d, %d groups listed)", count, perGroup, first, len(free))
	}
	used := []int{2}
	for g := 0; g*perGroup < count; g++ {
		ranges := free[g]
	next:
		for ino := max(g*perGroup+1, first); ino <= (g+1)*perGroup && ino <= count; ino++ {
			for _, r := range ranges {
				if ino >= r[0] && ino <= r[1] {
					continue next
				}
			}
			used = append(used, ino)
		}
	}
	return used, nil
}
