package disk

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// syntheticBoot is a boot.img stand-in: every byte is 0xb0 (the code),
// the drive-check jmp at 0x66 and the signature in place.
func syntheticBoot() []byte {
	b := bytes.Repeat([]byte{0xb0}, sector)
	b[bootDriveCheck], b[bootDriveCheck+1] = 0xeb, 0x05
	b[bootSignature], b[bootSignature+1] = 0x55, 0xaa
	return b
}

// syntheticMBR is a disk's sector 0 as sfdisk leaves it: zeros with a BPB
// area marker, a disk signature and a partition table.
func syntheticMBR() []byte {
	m := make([]byte, sector)
	for i := bootBPBStart; i < bootBPBEnd; i++ {
		m[i] = 0x11
	}
	for i := bootNTMagic; i < bootSignature; i++ {
		m[i] = byte(i)
	}
	m[bootSignature], m[bootSignature+1] = 0x55, 0xaa
	return m
}

func TestPatchBootSector(t *testing.T) {
	boot, mbr := syntheticBoot(), syntheticMBR()
	got, err := patchBootSector(mbr, boot, 0x0102030405060708)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != sector {
		t.Fatalf("%d bytes", len(got))
	}
	if !bytes.Equal(got[bootKernelSector:bootKernelSector+8], []byte{8, 7, 6, 5, 4, 3, 2, 1}) {
		t.Errorf("kernel sector field % x", got[bootKernelSector:bootKernelSector+8])
	}
	if got[bootBootDrive] != 0xff {
		t.Errorf("boot drive %#x, want 0xff", got[bootBootDrive])
	}
	if got[bootDriveCheck] != 0x90 || got[bootDriveCheck+1] != 0x90 {
		t.Errorf("drive check % x, want two NOPs", got[bootDriveCheck:bootDriveCheck+2])
	}
	if !bytes.Equal(got[bootBPBStart:bootBPBEnd], mbr[bootBPBStart:bootBPBEnd]) {
		t.Error("the disk's BPB area was not kept")
	}
	if !bytes.Equal(got[bootNTMagic:], mbr[bootNTMagic:]) {
		t.Error("the disk signature and partition table were not kept")
	}
	for _, r := range [][2]int{{0, bootBPBStart}, {bootBPBEnd, bootKernelSector}, {bootBootDrive + 1, bootDriveCheck}, {bootDriveCheck + 2, bootNTMagic}} {
		if !bytes.Equal(got[r[0]:r[1]], boot[r[0]:r[1]]) {
			t.Errorf("bytes %#x-%#x are not boot.img's code", r[0], r[1])
		}
	}
	if !bytes.Equal(mbr, syntheticMBR()) || !bytes.Equal(boot, syntheticBoot()) {
		t.Error("the inputs were changed")
	}
	if _, err := patchBootSector(mbr[:100], boot, 1); err == nil {
		t.Error("a short sector was accepted")
	}
	bad := syntheticBoot()
	bad[bootSignature] = 0
	if _, err := patchBootSector(mbr, bad, 1); err == nil {
		t.Error("a boot.img without its signature was accepted")
	}
}

func TestPatchBootSectorRealBootImg(t *testing.T) {
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		t.Skip("grub-pc-bin not installed")
	}
	// What grub-bios-setup expects to patch: a jmp at the drive check.
	if boot[bootDriveCheck] != 0xeb {
		t.Fatalf("boot.img at %#x is %#x, not a short jmp: GRUB's layout changed", bootDriveCheck, boot[bootDriveCheck])
	}
	got, err := patchBootSector(syntheticMBR(), boot, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint64(got[bootKernelSector:]) != 2048 || got[bootDriveCheck] != 0x90 {
		t.Errorf("patched boot.img: % x", got[bootKernelSector:bootDriveCheck+2])
	}
}

func TestPatchCore(t *testing.T) {
	// 3.5 sectors, as grub-mkimage leaves it: the first block list entry
	// holds the number of sectors after diskboot, the next one is the
	// terminator.
	core := bytes.Repeat([]byte{0xc0}, 3*sector+256)
	entry := core[sector-blocklistSize : sector]
	binary.LittleEndian.PutUint64(entry, 2)
	binary.LittleEndian.PutUint16(entry[8:], 3)
	binary.LittleEndian.PutUint16(entry[10:], coreSegment)
	clear(core[sector-2*blocklistSize : sector-blocklistSize])
	orig := append([]byte(nil), core...)

	got, err := patchCore(core, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4*sector {
		t.Fatalf("%d bytes, want 4 sectors", len(got))
	}
	e := got[sector-blocklistSize : sector]
	if start, n, seg := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint16(e[8:]), binary.LittleEndian.Uint16(e[10:]); start != 2049 || n != 3 || seg != 0x820 {
		t.Errorf("block list: start %d, %d sectors, segment %#x; want 2049, 3, 0x820", start, n, seg)
	}
	if !bytes.Equal(got[sector-2*blocklistSize:sector-blocklistSize], make([]byte, blocklistSize)) {
		t.Error("no terminator after the entry")
	}
	if !bytes.Equal(got[:sector-2*blocklistSize], orig[:sector-2*blocklistSize]) || !bytes.Equal(got[sector:len(orig)], orig[sector:]) {
		t.Error("bytes outside the block list changed")
	}
	if !bytes.Equal(got[len(orig):], make([]byte, 4*sector-len(orig))) {
		t.Error("the last sector is not padded with zeros")
	}

	// A stale second entry (a previous install) is cleared.
	binary.LittleEndian.PutUint16(core[sector-2*blocklistSize+8:], 9)
	clear(core[sector-3*blocklistSize : sector-2*blocklistSize])
	got, err = patchCore(core, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint16(got[sector-2*blocklistSize+8:]); n != 0 {
		t.Errorf("stale entry kept: %d sectors", n)
	}
	if start := binary.LittleEndian.Uint64(got[sector-blocklistSize:]); start != 2 {
		t.Errorf("start %d, want 2", start)
	}

	full := bytes.Repeat([]byte{0xff}, 2*sector)
	if _, err := patchCore(full, 1); err == nil {
		t.Error("a block list without terminator was accepted")
	}
	if _, err := patchCore(make([]byte, 100), 1); err == nil {
		t.Error("a 100-byte core was accepted")
	}
}
