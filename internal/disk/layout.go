package disk

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"vmdeb/internal/bytesize"
)

// Layout is the partitioning of one image: what Plan decides before any
// byte is written.
type Layout struct {
	Table        PartitionTable // gpt | mbr
	DiskID       string         // GPT disk GUID, or the MBR disk identifier as 0x%08x
	Parts        []Part         // in partition-number order
	TotalSectors int64          // of 512 bytes
}

// Part is one partition. Start and Sectors count 512-byte sectors.
type Part struct {
	Name     string // bios, esp, boot, swap, root
	Type     string // GPT type GUID, or MBR type as two hex digits
	Start    int64
	Sectors  int64
	FS       string // ext4, ext3, ext2, btrfs, xfs, vfat, swap; "" for the BIOS boot partition
	Mount    string // /, /boot, /boot/efi; "" for swap and the BIOS boot partition
	UUID     string // file system UUID (vfat: its volume id as XXXX-XXXX)
	PartUUID string // GPT partition GUID, or MBR's DISKID-NN
	Bootable bool   // MBR active flag, or GPT's LegacyBIOSBootable attribute
}

// Offset is the partition's first byte in the image.
func (p Part) Offset() int64 { return p.Start * sector }

// Bytes is the partition's size.
func (p Part) Bytes() int64 { return p.Sectors * sector }

// Part returns the partition called name and its number (from 1).
func (l Layout) Part(name string) (Part, int, bool) {
	for i, p := range l.Parts {
		if p.Name == name {
			return p, i + 1, true
		}
	}
	return Part{}, 0, false
}

// BootPart is the partition GRUB reads its files and the kernels from:
// /boot when it is separate, else the root.
func (l Layout) BootPart() Part {
	if p, _, ok := l.Part("boot"); ok {
		return p
	}
	p, _, _ := l.Part("root")
	return p
}

// Partition types. The root partition takes the architecture's type from
// the Discoverable Partitions Specification, which tools such as
// systemd-repart understand; it changes nothing for a root=UUID= boot.
const (
	gptBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	gptESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptLinux    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	gptSwap     = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	// A FAT /boot: Microsoft's basic data type, as parted gives FAT.
	gptBasicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
)

var gptRoot = map[string]string{
	"amd64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
	"i386":  "44479540-F297-41B2-9AF7-D131D5F0458A",
	"arm64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}

var mbrType = map[string]string{"esp": "ef", "boot": "83", "swap": "82", "root": "83"}

// fatMBRType is the MBR type of a FAT partition of size bytes as
// mkvfat makes it: FAT32 (LBA) from 64 MiB, FAT16 (LBA) below.
func fatMBRType(size int64) string {
	if size >= fat32From {
		return "0c"
	}
	return "0e"
}

// align is where partitions start and how their sizes round: 1 MiB, as
// every partitioning tool does for today's disks.
const align = mib / sector

// gptBackup is the sectors the backup GPT takes at the end of the disk.
const gptBackup = 33

// Plan lays out an image for o whose root file system holds rootfsBytes
// (files and directories, each rounded up to 4 KiB blocks). Partitions are
// 1 MiB aligned; the root comes last and takes the rest, so that it can be
// grown. It fails, saying how much is needed, when the root does not fit.
func Plan(o Options, rootfsBytes int64) (Layout, error) {
	return plan(o, Usage{Bytes: rootfsBytes})
}

func plan(o Options, root Usage) (Layout, error) {
	o, err := o.normalize()
	if err != nil {
		return Layout{}, err
	}
	l := Layout{Table: o.Table, TotalSectors: o.Size / sector}
	mbrID := mbrDiskID(o)
	if o.Table == GPT {
		l.DiskID = newUUID(o, "disk")
	} else {
		l.DiskID = fmt.Sprintf("0x%08x", mbrID)
	}
	start := o.PartitionOffset / sector
	add := func(p Part, size int64) {
		p.Start = start
		p.Sectors = roundUp(size, mib) / sector
		start += p.Sectors
		l.Parts = append(l.Parts, p)
	}
	if o.Table == GPT && o.bios() {
		// GRUB's core image lives here; GPT leaves no gap after the MBR.
		add(Part{Name: "bios", Type: gptBIOSBoot}, biosBootSize)
	}
	if o.uefi() {
		add(Part{Name: "esp", Type: gptESP, FS: "vfat", Mount: "/boot/efi", UUID: vfatID(o, "fs-esp")}, o.ESPSize)
	}
	if o.BootSize > 0 {
		p := Part{Name: "boot", Type: gptLinux, FS: o.bootFS(), Mount: "/boot", UUID: newUUID(o, "fs-boot")}
		if p.FS == string(VFAT) {
			p.Type, p.UUID = gptBasicData, vfatID(o, "fs-boot")
		}
		add(p, o.BootSize)
	}
	if o.SwapSize > 0 {
		add(Part{Name: "swap", Type: gptSwap, FS: "swap", UUID: newUUID(o, "fs-swap")}, o.SwapSize)
	}
	rootType := gptRoot[o.Arch.Name]
	if rootType == "" {
		rootType = gptLinux
	}
	rootPart := Part{Name: "root", Type: rootType, FS: string(o.RootFS), Mount: "/", UUID: newUUID(o, "fs-root"), Start: start}
	end := l.TotalSectors
	if o.Table == GPT {
		end -= gptBackup
	}
	rootPart.Sectors = (end - start) / align * align
	l.Parts = append(l.Parts, rootPart)

	// The smallest image that holds this root: the partitions before it,
	// the root's own minimum and the backup GPT, in whole MiB.
	rootMin := fsMinSize(root, string(o.RootFS))
	minTotal := start*sector + rootMin
	if o.Table == GPT {
		minTotal += mib
	}
	if rootPart.Sectors <= 0 || !fsFits(root, rootPart.Bytes(), string(o.RootFS)) {
		have := max(rootPart.Bytes(), 0)
		return l, &TooSmallError{Need: minTotal, Given: o.Size, RootNeed: rootMin, RootHave: have, RootData: root.Bytes}
	}

	for i := range l.Parts {
		p := &l.Parts[i]
		if o.Table == MBR {
			p.Type = mbrType[p.Name]
			if p.Name == "boot" && p.FS == string(VFAT) {
				p.Type = fatMBRType(p.Bytes())
			}
			p.PartUUID = fmt.Sprintf("%08x-%02d", mbrID, i+1)
		} else {
			p.PartUUID = newUUID(o, "part-"+p.Name)
		}
	}
	if o.Table == MBR && len(l.Parts) > 4 {
		return l, fmt.Errorf("disk: %d partitions do not fit in an MBR table without an extended partition (at most 4)", len(l.Parts))
	}
	// Some BIOSes boot only a disk with an active partition; syslinux's
	// MBR code boots the active partition (MBR) or the one marked
	// LegacyBIOSBootable (GPT).
	if o.Table == MBR || o.extlinux() {
		for i := range l.Parts {
			if l.Parts[i].Name == l.BootPart().Name {
				l.Parts[i].Bootable = true
			}
		}
	}
	return l, nil
}

// TooSmallError is an image too small for its root file system.
type TooSmallError struct {
	Need     int64 // smallest image size that would do
	Given    int64 // the size asked for
	RootNeed int64 // smallest root partition for the data
	RootHave int64 // root partition in the image asked for
	RootData int64 // the root file system's data
}

func (e *TooSmallError) Error() string {
	return fmt.Sprintf("disk: the root file system does not fit: its %s of files need a root partition of at least %s, "+
		"but an image of %s (%d bytes) leaves %s for it; the image must be at least %s (%d bytes)",
		bytesize.Format(e.RootData), bytesize.Format(e.RootNeed), bytesize.Format(e.Given), e.Given, bytesize.Format(e.RootHave), bytesize.Format(e.Need), e.Need)
}

// Usage is what a directory tree takes on an ext file system with 4 KiB
// blocks: data and directory blocks, and inodes.
type Usage struct {
	Bytes  int64
	Inodes int64
}

// extInodes is the inode count for a file system of part bytes holding u:
// mke2fs's default of one per 16 KiB, or more when the tree has many
// small files.
func extInodes(u Usage, part int64) int64 {
	return max(part/16384, u.Inodes+u.Inodes/10+64)
}

// journalBlocks is ext2fs_default_journal_size() of e2fsprogs 1.47, in
// 4 KiB blocks.
func journalBlocks(blocks int64) int64 {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// extNeed estimates the bytes an ext file system of part bytes needs to
// hold u: the data with some slack for extent and directory blocks, the
// journal, the inode tables, and the bitmaps, group descriptors and their
// backups. mke2fs -d fails when this is too low, so it errs on the high side.
func extNeed(u Usage, part int64, fs string) int64 {
	n := u.Bytes + u.Bytes/50 + extInodes(u, part)*256 + part/128 + 2*mib
	if fs != "ext2" {
		n += journalBlocks(part/4096) * 4096
	}
	return n
}

func extFits(u Usage, part int64, fs string) bool { return part > 0 && extNeed(u, part, fs) <= part }

// extMinSize is the smallest partition, in whole MiB, that holds u.
func extMinSize(u Usage, fs string) int64 {
	p := roundUp(u.Bytes+u.Bytes/50+4*mib, mib)
	for !extFits(u, p, fs) {
		p += mib
	}
	return p
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// newUUID is a version 4 UUID: random, or derived from the seed, the
// epoch and what it names when the build is to be reproducible.
func newUUID(o Options, what string) string {
	b := idBytes(o, what)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func idBytes(o Options, what string) [16]byte {
	var b [16]byte
	if o.SourceDateEpoch > 0 {
		h := sha256.Sum256([]byte("vmdeb-disk\x00" + o.Seed + "\x00" + strconv.FormatInt(o.SourceDateEpoch, 10) + "\x00" + what))
		copy(b[:], h[:])
	} else {
		rand.Read(b[:]) // never fails since Go 1.24
	}
	return b
}

// mbrDiskID is the MBR disk identifier; never 0, which tools read as unset.
func mbrDiskID(o Options) uint32 {
	b := idBytes(o, "mbr-disk")
	id := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if id == 0 {
		id = 1
	}
	return id
}

// vfatID is a FAT volume id as blkid and fstab write it: XXXX-XXXX.
func vfatID(o Options, what string) string {
	b := idBytes(o, what)
	return strings.ToUpper(fmt.Sprintf("%x-%x", b[0:2], b[2:4]))
}

// sfdiskScript is sfdisk's input for l.
func sfdiskScript(l Layout) string {
	var b strings.Builder
	if l.Table == GPT {
		b.WriteString("label: gpt\n")
	} else {
		b.WriteString("label: dos\n")
	}
	fmt.Fprintf(&b, "label-id: %s\nunit: sectors\nsector-size: 512\n\n", l.DiskID)
	for _, p := range l.Parts {
		fmt.Fprintf(&b, "start=%d, size=%d, type=%s", p.Start, p.Sectors, p.Type)
		if l.Table == GPT {
			fmt.Fprintf(&b, ", uuid=%s, name=%s", p.PartUUID, p.Name)
		}
		switch {
		case p.Bootable && l.Table == GPT:
			b.WriteString(`, attrs="LegacyBIOSBootable"`)
		case p.Bootable:
			b.WriteString(", bootable")
		}
		b.WriteString("\n")
	}
	return b.String()
}
