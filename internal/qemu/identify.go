package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"vmdeb/internal/arch"
)

// Identity is what an image says about how it boots, read from its own
// bytes: the architectures of the UEFI loaders it carries and whether it
// has PC BIOS boot code.
type Identity struct {
	// Archs are the Debian architectures of the PE loaders in the EFI
	// boot directory (EFI/BOOT/*.EFI of the El Torito EFI image or the
	// EFI system partition), sorted; empty when it has none.
	Archs []string
	// Loaders name the loader files behind Archs, for messages.
	Loaders []string
	// BIOS: an El Torito entry for x86 BIOS, or boot code in the MBR.
	BIOS bool
}

// UEFI says whether the image has a UEFI loader.
func (id Identity) UEFI() bool { return len(id.Archs) > 0 }

// peArch maps a PE/COFF machine type to the Debian architecture it runs on.
var peArch = map[uint16]string{
	0x8664: "amd64",
	0x014c: "i386",
	0xaa64: "arm64",
	0x01c2: "armhf",
	0x01c4: "armhf",
	0x5064: "riscv64",
}

// Identify reads an image of kind (KindISO, KindQcow2, KindRaw) and
// reports its boot loaders. Only headers, partition tables and a few
// directory clusters are read. An image it cannot make sense of gives an
// error saying what was missing; the caller decides what to assume then.
func Identify(path, kind string) (Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, err
	}
	defer f.Close()
	var r io.ReaderAt = f
	if kind == KindQcow2 {
		if r, err = openQcow2(f); err != nil {
			return Identity{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	var id Identity
	if kind == KindISO {
		err = identifyISO(r, &id)
	} else {
		err = identifyDisk(r, &id)
	}
	if err != nil {
		return id, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// identifyISO reads the El Torito boot catalog: a BIOS entry (platform 0)
// and the EFI entries' FAT images (platform 0xEF), as firmware booting the
// CD sees them.
func identifyISO(r io.ReaderAt, id *Identity) error {
	const sec = 2048
	var catalog uint32
	for s := int64(16); s < 16+64; s++ {
		vd := make([]byte, sec)
		if _, err := r.ReadAt(vd, s*sec); err != nil {
			return fmt.Errorf("volume descriptors: %w", err)
		}
		if string(vd[1:6]) != "CD001" || vd[0] == 0xff {
			break
		}
		if vd[0] == 0 && strings.HasPrefix(string(vd[7:39]), "EL TORITO SPECIFICATION") {
			catalog = binary.LittleEndian.Uint32(vd[0x47:])
			break
		}
	}
	if catalog == 0 {
		return errors.New("no El Torito boot record: the ISO is not bootable")
	}
	cat := make([]byte, sec)
	if _, err := r.ReadAt(cat, int64(catalog)*sec); err != nil {
		return fmt.Errorf("El Torito catalog: %w", err)
	}
	if cat[0] != 1 || cat[0x1e] != 0x55 || cat[0x1f] != 0xaa {
		return errors.New("El Torito catalog: no validation entry")
	}
	type entry struct {
		platform byte
		lba      uint32
	}
	var entries []entry
	platform := cat[1]
	// The default entry follows the validation entry; section headers
	// (0x90, 0x91 for the last) each give a platform to their entries.
	if cat[0x20] == 0x88 {
		entries = append(entries, entry{platform, binary.LittleEndian.Uint32(cat[0x28:])})
	}
	for off := 0x40; off+32 <= len(cat); {
		h := cat[off]
		if h != 0x90 && h != 0x91 {
			break
		}
		platform = cat[off+1]
		n := int(binary.LittleEndian.Uint16(cat[off+2:]))
		off += 32
		for i := 0; i < n && off+32 <= len(cat); i, off = i+1, off+32 {
			if cat[off] == 0x88 {
				entries = append(entries, entry{platform, binary.LittleEndian.Uint32(cat[off+8:])})
			}
		}
		if h == 0x91 {
			break
		}
	}
	var errs []error
	for _, e := range entries {
		switch e.platform {
		case 0:
			id.BIOS = true
		case 0xef:
			if err := efiLoaders(io.NewSectionReader(r, int64(e.lba)*sec, 1<<40), "the El Torito EFI image", id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if !id.UEFI() && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// espGUID is the EFI system partition's type GUID as GPT stores it.
var espGUID = []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}

// identifyDisk reads the MBR (boot code, partitions of type 0xEF) and a
// GPT behind a protective MBR (partitions of the ESP type), and each EFI
// system partition's loaders.
func identifyDisk(r io.ReaderAt, id *Identity) error {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return errors.New("no partition table (no MBR signature)")
	}
	id.BIOS = slices.ContainsFunc(mbr[:440], func(b byte) bool { return b != 0 })
	var esps []int64 // byte offsets
	gpt := false
	for i := range 4 {
		p := mbr[446+16*i:]
		switch p[4] {
		case 0xef:
			esps = append(esps, int64(binary.LittleEndian.Uint32(p[8:]))*512)
		case 0xee:
			gpt = true
		}
	}
	if gpt {
		hdr := make([]byte, 512)
		if _, err := r.ReadAt(hdr, 512); err != nil {
			return fmt.Errorf("GPT header: %w", err)
		}
		if string(hdr[:8]) != "EFI PART" {
			return errors.New("protective MBR without a GPT header")
		}
		lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
		n := int64(binary.LittleEndian.Uint32(hdr[80:]))
		size := int64(binary.LittleEndian.Uint32(hdr[84:]))
		if size < 128 || n > 1024 {
			return fmt.Errorf("GPT header: %d entries of %d bytes", n, size)
		}
		tab := make([]byte, n*size)
		if _, err := r.ReadAt(tab, lba*512); err != nil {
			return fmt.Errorf("GPT entries: %w", err)
		}
		for i := range n {
			e := tab[i*size:]
			if bytes.Equal(e[:16], espGUID) {
				esps = append(esps, int64(binary.LittleEndian.Uint64(e[32:]))*512)
			}
		}
	}
	var errs []error
	for i, off := range esps {
		if err := efiLoaders(io.NewSectionReader(r, off, 1<<40), fmt.Sprintf("EFI system partition %d", i+1), id); err != nil {
			errs = append(errs, err)
		}
	}
	if !id.UEFI() && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// efiLoaders adds the architectures of the PE files in EFI/BOOT of the FAT
// file system r, the removable-media path firmware boots from.
func efiLoaders(r io.ReaderAt, where string, id *Identity) error {
	fs, err := openFAT(r)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	dir, err := fs.lookupDir("EFI", "BOOT")
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	for _, e := range dir {
		if e.dir || !strings.HasSuffix(e.name, ".EFI") {
			continue
		}
		head, err := fs.head(e, 4096)
		if err != nil {
			return fmt.Errorf("%s: EFI/BOOT/%s: %w", where, e.name, err)
		}
		a, ok := peArch[peMachine(head)]
		if !ok {
			continue
		}
		id.Loaders = append(id.Loaders, "EFI/BOOT/"+e.name+" in "+where)
		if !slices.Contains(id.Archs, a) {
			id.Archs = append(id.Archs, a)
			slices.Sort(id.Archs)
		}
	}
	return nil
}

// peMachine is the COFF machine field of a PE image's header, 0 if b does
// not start with one.
func peMachine(b []byte) uint16 {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return 0
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if pe < 0 || pe+6 > len(b) || string(b[pe:pe+4]) != "PE\x00\x00" {
		return 0
	}
	return binary.LittleEndian.Uint16(b[pe+4:])
}

// fat is a read-only view of a FAT12/16/32 file system, enough to list
// directories and read the start of files.
type fat struct {
	r                   io.ReaderAt
	bytesPerSec         int64
	secPerClus          int64
	fatStart, dataStart int64 // byte offsets
	rootStart, rootSize int64 // FAT12/16 fixed root directory
	rootClus            uint32
	bits                int // 12, 16 or 32
	clusters            uint32
}

func openFAT(r io.ReaderAt) (*fat, error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("FAT boot sector: %w", err)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(b[o:])) }
	f := &fat{r: r, bytesPerSec: le16(11), secPerClus: int64(b[13])}
	reserved, nFATs, rootEnts := le16(14), int64(b[16]), le16(17)
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	fatSize := le16(22)
	if fatSize == 0 {
		fatSize = le32(36)
	}
	switch f.bytesPerSec {
	case 512, 1024, 2048, 4096:
	default:
		return nil, errors.New("not a FAT file system")
	}
	if f.secPerClus == 0 || nFATs == 0 || fatSize == 0 || b[510] != 0x55 || b[511] != 0xaa {
		return nil, errors.New("not a FAT file system")
	}
	rootSecs := (rootEnts*32 + f.bytesPerSec - 1) / f.bytesPerSec
	dataSec := reserved + nFATs*fatSize + rootSecs
	if total <= dataSec {
		return nil, errors.New("FAT: no data area")
	}
	f.clusters = uint32((total - dataSec) / f.secPerClus)
	f.fatStart = reserved * f.bytesPerSec
	f.rootStart = (reserved + nFATs*fatSize) * f.bytesPerSec
	f.rootSize = rootSecs * f.bytesPerSec
	f.dataStart = dataSec * f.bytesPerSec
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
		f.rootClus = uint32(le32(44))
	}
	return f, nil
}

// next is the cluster after c in its chain; ok is false at the end.
func (f *fat) next(c uint32) (uint32, bool, error) {
	var n uint32
	switch f.bits {
	case 12:
		var b [2]byte
		if _, err := f.r.ReadAt(b[:], f.fatStart+int64(c)+int64(c)/2); err != nil {
			return 0, false, err
		}
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if c%2 == 1 {
			n = v >> 4
		} else {
			n = v & 0xfff
		}
		return n, n >= 2 && n < 0xff7, nil
	case 16:
		var b [2]byte
		if _, err := f.r.ReadAt(b[:], f.fatStart+2*int64(c)); err != nil {
			return 0, false, err
		}
		n = uint32(binary.LittleEndian.Uint16(b[:]))
		return n, n >= 2 && n < 0xfff7, nil
	}
	var b [4]byte
	if _, err := f.r.ReadAt(b[:], f.fatStart+4*int64(c)); err != nil {
		return 0, false, err
	}
	n = binary.LittleEndian.Uint32(b[:]) & 0x0fffffff
	return n, n >= 2 && n < 0x0ffffff7, nil
}

func (f *fat) clusterBytes() int64 { return f.bytesPerSec * f.secPerClus }

func (f *fat) readCluster(c uint32) ([]byte, error) {
	if c < 2 || c >= f.clusters+2 {
		return nil, fmt.Errorf("FAT: cluster %d out of range", c)
	}
	b := make([]byte, f.clusterBytes())
	_, err := f.r.ReadAt(b, f.dataStart+int64(c-2)*f.clusterBytes())
	return b, err
}

// fatEntry is one directory entry, by its 8.3 name ("BOOTX64.EFI").
type fatEntry struct {
	name string
	dir  bool
	clus uint32
	size int64
}

// maxDirClusters bounds a directory's chain: a loop in a corrupt FAT
// must not run forever.
const maxDirClusters = 4096

// readDir lists directory cluster chain c (0: the root directory).
func (f *fat) readDir(c uint32) ([]fatEntry, error) {
	var raw []byte
	if c == 0 && f.bits != 32 {
		raw = make([]byte, f.rootSize)
		if _, err := f.r.ReadAt(raw, f.rootStart); err != nil {
			return nil, err
		}
	} else {
		if c == 0 {
			c = f.rootClus
		}
		for i := 0; ; i++ {
			if i == maxDirClusters {
				return nil, errors.New("FAT: directory too long (a loop in the FAT?)")
			}
			b, err := f.readCluster(c)
			if err != nil {
				return nil, err
			}
			raw = append(raw, b...)
			n, ok, err := f.next(c)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			c = n
		}
	}
	var out []fatEntry
	for off := 0; off+32 <= len(raw); off += 32 {
		e := raw[off : off+32]
		if e[0] == 0 {
			break
		}
		attr := e[11]
		if e[0] == 0xe5 || attr&0x0f == 0x0f || attr&0x08 != 0 {
			continue // deleted, long-name part, volume label
		}
		name := strings.TrimRight(string(e[0:8]), " ")
		if ext := strings.TrimRight(string(e[8:11]), " "); ext != "" {
			name += "." + ext
		}
		out = append(out, fatEntry{
			name: strings.ToUpper(name),
			dir:  attr&0x10 != 0,
			clus: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			size: int64(binary.LittleEndian.Uint32(e[28:])),
		})
	}
	return out, nil
}

// lookupDir lists the directory at path (upper-case 8.3 components).
func (f *fat) lookupDir(path ...string) ([]fatEntry, error) {
	ents, err := f.readDir(0)
	if err != nil {
		return nil, err
	}
	for i, name := range path {
		j := slices.IndexFunc(ents, func(e fatEntry) bool { return e.dir && e.name == name })
		if j < 0 {
			return nil, fmt.Errorf("no %s directory", strings.Join(path[:i+1], "/"))
		}
		if ents, err = f.readDir(ents[j].clus); err != nil {
			return nil, err
		}
	}
	return ents, nil
}

// head reads up to n bytes from the start of e.
func (f *fat) head(e fatEntry, n int64) ([]byte, error) {
	var out []byte
	c := e.clus
	for int64(len(out)) < min(n, e.size) {
		b, err := f.readCluster(c)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		next, ok, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		c = next
	}
	return out[:min(int64(len(out)), n, e.size)], nil
}

// Choice is the machine a boot uses and why, for its first line.
type Choice struct {
	Arch arch.Arch
	UEFI bool
	Why  string
}

// Choose picks the architecture and firmware for booting an image with
// identity id (idErr: why it could not be read, if so). wantArch ("" =
// the image's) and uefi (nil = the image's) are what the user asked for;
// an architecture the image's UEFI loaders contradict is an error, since
// such a boot could never start.
func Choose(id Identity, idErr error, wantArch string, uefi *bool) (Choice, error) {
	var c Choice
	var archWhy string
	loader := ""
	if len(id.Loaders) > 0 {
		loader = id.Loaders[0]
	}
	name := wantArch
	switch {
	case id.UEFI() && wantArch != "" && !slices.Contains(id.Archs, wantArch):
		return c, fmt.Errorf("--arch %s, but the image's UEFI loader (%s) is %s code: leave --arch out, or give --arch %s",
			wantArch, loader, strings.Join(id.Archs, ", "), id.Archs[0])
	case id.UEFI() && wantArch != "":
		archWhy = fmt.Sprintf("--arch %s, as the image's UEFI loader says", wantArch)
	case id.UEFI():
		name = id.Archs[0]
		if slices.Contains(id.Archs, "amd64") {
			name = "amd64" // a 64-bit PC image that also carries a 32-bit UEFI loader
		}
		archWhy = fmt.Sprintf("the image's UEFI loader %s is %s code", loader, strings.Join(id.Archs, ", "))
	case wantArch != "":
		archWhy = "--arch " + wantArch
	case id.BIOS:
		name = "amd64"
		archWhy = "the image has PC BIOS boot code and no UEFI loader: amd64 assumed (give --arch i386 for a 32-bit image)"
	default:
		name = "amd64"
		why := "it has no UEFI loader and no BIOS boot code"
		if idErr != nil {
			why = idErr.Error()
		}
		archWhy = fmt.Sprintf("could not tell the architecture from the image (%s): amd64 assumed (give --arch)", why)
	}
	a, err := arch.Lookup(name)
	if err != nil {
		return c, fmt.Errorf("--arch: %w", err)
	}
	if id.BIOS && !id.UEFI() && !a.HasFirmware(arch.BIOS) {
		return c, fmt.Errorf("--arch %s, but the image has only PC BIOS boot code, which %s machines do not run", name, name)
	}
	c.Arch = a
	var fwWhy string
	hasLoader := slices.Contains(id.Archs, a.Name)
	switch {
	case uefi != nil:
		c.UEFI = *uefi
		fwWhy = "as asked"
		if c.UEFI && !hasLoader && idErr == nil {
			fwWhy += ", though the image has no UEFI loader for " + a.Name
		}
		if !c.UEFI && !id.BIOS && idErr == nil {
			fwWhy += ", though the image has no BIOS boot code"
		}
	case !a.HasFirmware(arch.BIOS):
		c.UEFI = true
		fwWhy = a.Name + " has no BIOS"
	case id.BIOS:
		fwWhy = "the image has BIOS boot code (--uefi for UEFI)"
	case hasLoader:
		c.UEFI = true
		fwWhy = "the image has a UEFI loader and no BIOS boot code"
	default:
		fwWhy = "the default"
	}
	c.Why = fmt.Sprintf("%s (%s) with %s: %s; %s", a.Name, a.QemuSystem, firmwareName(c.UEFI), archWhy, fwWhy)
	return c, nil
}
