package disk

import (
	"fmt"

	"vmdeb/internal/live"
)

// checkDeviceTree checks the device tree the GRUB menu is to load: an
// architecture that uses them, a boot loader that loads one, and every
// kernel's copy in rootfs, so a missing one fails before the image is made.
func checkDeviceTree(o Options, rootfs string, kernels []string) error {
	if o.DeviceTree == "" {
		return nil
	}
	if !o.Arch.DeviceTrees {
		return fmt.Errorf("disk: device tree %s: architecture %s does not use device trees", o.DeviceTree, o.Arch.Name)
	}
	if !o.grub() {
		return fmt.Errorf("disk: device tree %s: only GRUB loads one, and this image's boot loader is %s", o.DeviceTree, o.Bootloader)
	}
	if err := live.ValidDeviceTree(o.DeviceTree); err != nil {
		return fmt.Errorf("disk: device tree: %w", err)
	}
	for _, v := range kernels {
		dtbs, err := live.FindDTBs(rootfs, v)
		if err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		if err := live.CheckDeviceTree(o.DeviceTree, v, dtbs); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
	}
	return nil
}
