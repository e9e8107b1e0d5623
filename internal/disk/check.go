package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"vmdeb/internal/buildlog"
)

// check reads the finished raw image back, with other tools than the ones
// that wrote it where there are such.
func (b *builder) check() error {
	if _, err := b.output("sfdisk", []string{"--dump", b.img}); err != nil {
		return err
	}
	js, err := b.output("sfdisk", []string{"--json", b.img})
	if err != nil {
		return err
	}
	if err := checkTable(js, b.l); err != nil {
		return err
	}
	var errs []error
	for _, p := range b.l.Parts {
		if p.FS == "" {
			continue
		}
		if err := b.checkUUID(p); err != nil {
			errs = append(errs, err)
			continue
		}
		switch p.FS {
		case "ext2", "ext3", "ext4":
			// -n: read-only; -f: even though it looks clean.
			if err := b.runTool("e2fsck", []string{"-f", "-n", b.img + "?offset=" + strconv.FormatInt(p.Offset(), 10)}); err != nil {
				errs = append(errs, fmt.Errorf("%s file system: %w", p.Mount, err))
			}
		case "vfat":
			if p.Name != "esp" {
				break
			}
			if err := b.checkLoader(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if b.o.bios() {
		if err := b.checkBIOS(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.o.extlinux() {
		if err := b.checkExtlinux(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sfdiskJSON is what sfdisk --json says of a table.
type sfdiskJSON struct {
	Table struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// checkTable compares sfdisk's reading of the table with the layout.
func checkTable(js string, l Layout) error {
	var t sfdiskJSON
	if err := json.Unmarshal([]byte(js), &t); err != nil {
		return fmt.Errorf("sfdisk --json: %w", err)
	}
	want := map[PartitionTable]string{GPT: "gpt", MBR: "dos"}[l.Table]
	if t.Table.Label != want {
		return fmt.Errorf("partition table is %q, want %q", t.Table.Label, want)
	}
	if !strings.EqualFold(t.Table.ID, l.DiskID) {
		return fmt.Errorf("disk id is %s, want %s", t.Table.ID, l.DiskID)
	}
	ps := t.Table.Partitions
	if len(ps) != len(l.Parts) {
		return fmt.Errorf("the table has %d partitions, want %d", len(ps), len(l.Parts))
	}
	for i, p := range l.Parts {
		g := ps[i]
		if l.Table == GPT {
			g.Bootable = slices.Contains(strings.Fields(g.Attrs), "LegacyBIOSBootable")
		}
		if g.Start != p.Start || g.Size != p.Sectors || !sameType(g.Type, p.Type) ||
			(l.Table == GPT && !strings.EqualFold(g.UUID, p.PartUUID)) || g.Bootable != p.Bootable {
			return fmt.Errorf("partition %d (%s) reads back as start %d size %d type %s uuid %s bootable %v, want %d %d %s %s %v",
				i+1, p.Name, g.Start, g.Size, g.Type, g.UUID, g.Bootable, p.Start, p.Sectors, p.Type, p.PartUUID, p.Bootable)
		}
	}
	return nil
}

// sameType compares partition types as sfdisk prints them: GPT GUIDs in
// any case, MBR types in hex without leading zeros ("e" for 0e).
func sameType(got, want string) bool {
	return strings.EqualFold(strings.TrimLeft(got, "0"), strings.TrimLeft(want, "0"))
}

// checkUUID probes p's signature with blkid: the type and UUID that fstab
// and the boot menu name must be the ones on the disk.
func (b *builder) checkUUID(p Part) error {
	out, err := b.output("blkid", []string{"--probe", "--offset", strconv.FormatInt(p.Offset(), 10),
		"--size", strconv.FormatInt(p.Bytes(), 10), "--output", "export", b.img})
	if err != nil {
		return fmt.Errorf("partition %s: blkid: %w", p.Name, err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	if got["TYPE"] != p.FS || !strings.EqualFold(got["UUID"], p.UUID) {
		return fmt.Errorf("partition %s: blkid finds %s with UUID %s, want %s with UUID %s", p.Name, got["TYPE"], got["UUID"], p.FS, p.UUID)
	}
	return nil
}

// checkLoader reads the EFI loader the firmware boots back from the ESP.
func (b *builder) checkLoader(p Part) error {
	rel := b.o.removablePath()
	want, err := os.ReadFile(filepath.Join(b.espDir, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	got, err := b.outputQuiet("mcopy", []string{"-n", "-i", b.mtoolsImage(p), "::/" + rel, "-"}, mtoolsEnv...)
	if err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("ESP: /%s reads back as %d bytes that differ from the loader's %d", rel, len(got), len(want))
	}
	return nil
}

// readImage reads n bytes of the image at offset off.
func (b *builder) readImage(off int64, n int) ([]byte, error) {
	f, err := os.Open(filepath.Join(b.tmp, b.img))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// checkBIOS reads the boot sector and the core image back.
func (b *builder) checkBIOS() error {
	mbr, err := b.readImage(0, sector)
	if err != nil {
		return err
	}
	boot, err := os.ReadFile(filepath.Join(b.o.grubDir("i386-pc"), "boot.img"))
	if err != nil {
		return err
	}
	lba, _ := b.coreArea()
	// The boot code around the fields grub-bios-setup patches is boot.img's.
	if !bytes.Equal(mbr[bootBPBEnd:bootKernelSector], boot[bootBPBEnd:bootKernelSector]) ||
		!bytes.Equal(mbr[bootDriveCheck+2:bootNTMagic], boot[bootDriveCheck+2:bootNTMagic]) ||
		mbr[bootSignature] != 0x55 || mbr[bootSignature+1] != 0xaa {
		return errors.New("the MBR does not hold GRUB's boot code")
	}
	if got := leUint64(mbr[bootKernelSector:]); got != uint64(lba) {
		return fmt.Errorf("the MBR points at sector %d for the core image, want %d", got, lba)
	}
	core, err := os.ReadFile(filepath.Join(b.tmp, "core.img"))
	if err != nil {
		return err
	}
	want, err := patchCore(core, uint64(lba))
	if err != nil {
		return err
	}
	got, err := b.readImage(lba*sector, len(want))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the core image at sector %d does not read back", lba)
	}
	return nil
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// outputQuiet runs a command whose standard output is data, kept out of
// the log.
func (b *builder) outputQuiet(name string, args []string, env ...string) ([]byte, error) {
	var out bytes.Buffer
	err := b.log.Run(b.ctx, buildlog.Cmd{Name: buildlog.Tool(name), Args: args, Dir: b.tmp, Env: append(b.epochEnv(), env...), Stdout: &out})
	return out.Bytes(), err
}
