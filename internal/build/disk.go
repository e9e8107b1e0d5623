package build

import (
	"context"
	"fmt"

	"vmdeb/internal/arch"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/disk"
)

// diskStage writes a bootable disk image of the root file system.
type diskStage struct {
	outputStage
	out config.Output
}

func (diskStage) Name() string { return "disk" }

// diskOptions maps a config's disk output onto the disk package's options.
func diskOptions(p *Plan, o config.Output, grubDir string) disk.Options {
	d := disk.Options{
		Size: o.Size.Bytes, Format: o.DiskFormat(), Table: o.PartitionTable, RootFS: o.Filesystem,
		BootSize: o.BootSize.Bytes, SwapSize: o.SwapSize.Bytes, ESPSize: o.ESPSize.Bytes,
		Bootloader: o.Bootloader, Arch: p.Arch, KernelParams: o.KernelParams,
		Hostname: p.Spec.Hostname, Network: o.Network, GrowRoot: o.GrowRoot, Seed: p.Spec.Name,
		SourceDateEpoch: p.SourceDateEpoch, DeviceTree: p.Spec.DeviceTree,
	}
	d.BootFS, d.PartitionOffset = o.BootFilesystem, o.PartitionOffset.Bytes
	if o.ImageHook != "" {
		d.Hook = &disk.Hook{Script: p.Spec.Path(o.ImageHook), Dir: p.Spec.Dir, Timeout: p.Spec.HookTimeout.Duration}
	}
	if grubDir != "" {
		d.GrubDirs = map[string]string{p.Arch.GrubEFITarget: grubDir}
	}
	return d
}

func (s diskStage) Run(ctx context.Context, st *State) error {
	out := st.Plan.Spec.Path(s.out.Path)
	tmp, err := st.temp(out)
	if err != nil {
		return err
	}
	o := diskOptions(st.Plan, s.out, st.GrubDir)
	o.SecureBoot = diskSecureBoot(st.Plan.Spec, st.Plan.Arch)
	if o.Hook != nil {
		o.Hook.Env = HookEnv(st)
	}
	st.Log.Printf("writing %s (%s, %s)", out, o.Format, bytesize.Format(o.Size))
	if err := disk.Build(ctx, st.Log, st.Rootfs, tmp, o); err != nil {
		return fmt.Errorf("disk image %s: %w", out, err)
	}
	return st.commit(tmp, out, config.Disk)
}

// diskSecureBoot tells whether a disk of s boots UEFI through Debian's
// signed chain, which its packages then hold (diskPackages).
func diskSecureBoot(s *config.Spec, a arch.Arch) bool {
	return s.UsesSecureBoot() && a.SecureBoot != nil
}

// diskPackages are what the image needs installed for disk output o:
// Debian's signed boot chain and grub-install where o's UEFI boot goes
// through Secure Boot.
func diskPackages(s *config.Spec, o config.Output) []string {
	a, err := arch.Lookup(s.Architecture)
	if err != nil || o.Type != config.Disk || !diskSecureBoot(s, a) {
		return nil
	}
	if b := o.DiskBootloader(a); b != disk.GrubUEFI && b != disk.GrubHybrid {
		return nil
	}
	return disk.ImagePackages(a)
}
