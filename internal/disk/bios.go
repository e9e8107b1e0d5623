package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets in GRUB's boot.img and diskboot.img, from GRUB's
// include/grub/i386/pc/boot.h and util/setup.c (grub-bios-setup), whose
// work placeBIOS does on an image file.
const (
	bootBPBStart     = 0x03  // a FAT BPB, kept from the disk
	bootBPBEnd       = 0x5a  //
	bootKernelSector = 0x5c  // LBA of core.img's first sector, 8 bytes LE
	bootBootDrive    = 0x64  // 0xff: use the drive the BIOS passed in DL
	bootDriveCheck   = 0x66  // a 2-byte jmp over the DL sanity check
	bootNTMagic      = 0x1b8 // disk signature and partition table from here
	bootSignature    = 0x1fe // 0x55 0xaa

	// diskboot.img's block list: entries of 12 bytes (start LBA u64, sector
	// count u16, load segment u16) from the end of core.img's first sector
	// downwards, ended by an entry of length 0.
	blocklistSize = 12
	// coreSegment is where the sectors after diskboot are loaded:
	// GRUB_BOOT_I386_PC_KERNEL_SEG + one sector, 0x820.
	coreSegment = 0x800 + sector>>4
)

// patchBootSector returns the disk's new sector 0: GRUB's boot.img, with
// the disk's BPB area and disk signature + partition table kept, pointing
// at core.img's first sector coreLBA, taking the boot drive from the BIOS
// and with the workaround for BIOSes passing a bad drive number enabled (as
// grub-bios-setup does for a hard disk).
func patchBootSector(mbr, bootImg []byte, coreLBA uint64) ([]byte, error) {
	if len(mbr) != sector || len(bootImg) != sector {
		return nil, fmt.Errorf("boot sector: want %d bytes, have %d (disk) and %d (boot.img)", sector, len(mbr), len(bootImg))
	}
	if bootImg[bootSignature] != 0x55 || bootImg[bootSignature+1] != 0xaa {
		return nil, errors.New("boot.img has no boot signature")
	}
	out := append([]byte(nil), bootImg...)
	copy(out[bootBPBStart:bootBPBEnd], mbr[bootBPBStart:bootBPBEnd])
	copy(out[bootNTMagic:], mbr[bootNTMagic:])
	out[bootSignature], out[bootSignature+1] = 0x55, 0xaa
	binary.LittleEndian.PutUint64(out[bootKernelSector:], coreLBA)
	out[bootBootDrive] = 0xff
	out[bootDriveCheck], out[bootDriveCheck+1] = 0x90, 0x90
	return out, nil
}

// patchCore returns core.img padded to whole sectors with diskboot's block
// list set for an image written contiguously from coreLBA: the remaining
// sectors from coreLBA+1, loaded at segment 0x820, then the terminator.
// The entries grub-mkimage left are cleared first, as grub-bios-setup does.
func patchCore(core []byte, coreLBA uint64) ([]byte, error) {
	if len(core) < 2*sector {
		return nil, fmt.Errorf("core.img is %d bytes: too small", len(core))
	}
	nsec := (len(core) + sector - 1) / sector
	if nsec-1 > 0xffff {
		return nil, fmt.Errorf("core.img is %d bytes: too large", len(core))
	}
	out := make([]byte, nsec*sector)
	copy(out, core)
	first := sector - blocklistSize
	for off := first; ; off -= blocklistSize {
		if off <= 0 {
			return nil, errors.New("core.img: no terminator in diskboot's block list")
		}
		e := out[off : off+blocklistSize]
		if binary.LittleEndian.Uint16(e[8:]) == 0 {
			break
		}
		clear(e)
	}
	e := out[first : first+blocklistSize]
	binary.LittleEndian.PutUint64(e[0:], coreLBA+1)
	binary.LittleEndian.PutUint16(e[8:], uint16(nsec-1))
	binary.LittleEndian.PutUint16(e[10:], coreSegment)
	clear(out[first-blocklistSize : first])
	return out, nil
}
