package installer

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// InitrdInfo is what the medium's content depends on in one of
// debian-installer's initrds: the kernel its modules are for, and the
// udebs already unpacked in it (anna loads only the others from the
// medium).
type InitrdInfo struct {
	Kernel string          // e.g. 6.12.38+deb13-amd64
	Udebs  map[string]bool // from its /var/lib/dpkg/status
	// Provided are the virtual packages those udebs provide.
	Provided map[string]bool
}

// ReadInitrd reads a gzip-compressed newc cpio initrd (as d-i's are).
func ReadInitrd(path string) (InitrdInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return InitrdInfo{}, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return InitrdInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	info, err := readCpio(zr)
	if err != nil {
		return InitrdInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// readCpio scans a newc ("070701") archive for lib/modules/VERSION and
// var/lib/dpkg/status.
func readCpio(r io.Reader) (InitrdInfo, error) {
	info := InitrdInfo{Udebs: map[string]bool{}, Provided: map[string]bool{}}
	br := bufio.NewReader(r)
	var off int64
	hdr := make([]byte, 110)
	status := false
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return info, fmt.Errorf("cpio header at %d: %w", off, err)
		}
		off += 110
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return info, fmt.Errorf("not a newc cpio archive (magic %q at %d)", hdr[:6], off-110)
		}
		field := func(i int) (int64, error) {
			return strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
		}
		size, err1 := field(6)
		nameLen, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil {
			return info, fmt.Errorf("cpio header at %d: %w", off-110, err)
		}
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(br, name); err != nil {
			return info, err
		}
		off += nameLen
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := br.Discard(int(pad)); err != nil {
				return info, err
			}
			off += pad
		}
		n := strings.TrimPrefix(strings.TrimRight(string(name), "\x00"), "./")
		if n == "TRAILER!!!" {
			break
		}
		if rest, ok := strings.CutPrefix(strings.TrimPrefix(n, "usr/"), "lib/modules/"); ok && info.Kernel == "" {
			if v, _, _ := strings.Cut(rest, "/"); v != "" {
				info.Kernel = v
			}
		}
		if n == "var/lib/dpkg/status" && size > 0 {
			data := make([]byte, size)
			if _, err := io.ReadFull(br, data); err != nil {
				return info, err
			}
			for _, l := range strings.Split(string(data), "\n") {
				if p, ok := strings.CutPrefix(l, "Package:"); ok {
					info.Udebs[strings.TrimSpace(p)] = true
				}
				// What they provide counts as there too, for the
				// dependencies of the udebs on the medium.
				if p, ok := strings.CutPrefix(l, "Provides:"); ok {
					for _, v := range strings.Split(p, ",") {
						if n, _, _ := strings.Cut(strings.TrimSpace(v), " "); n != "" {
							info.Provided[n] = true
						}
					}
				}
			}
			status = true
		} else if _, err := br.Discard(int(size)); err != nil {
			return info, err
		}
		off += size
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := br.Discard(int(pad)); err != nil {
				return info, err
			}
			off += pad
		}
	}
	if info.Kernel == "" {
		return info, errors.New("no lib/modules/VERSION in the initrd")
	}
	if !status {
		return info, errors.New("no var/lib/dpkg/status in the initrd")
	}
	return info, nil
}
