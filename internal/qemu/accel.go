package qemu

import "vmdeb/internal/arch"

// ChooseAccel picks the accelerator for a guest of architecture a the way
// Boot does: want is "auto" (KVM only when a real-mode probe shows that
// it works, else TCG), "kvm" or "tcg". note explains the choice for a log.
func ChooseAccel(want string, a arch.Arch) (accel, note string, err error) {
	if want == "" {
		want = "auto"
	}
	accel, _, note, err = chooseAccel(want, a)
	return accel, note, err
}

// KVMFailed reports whether a line qemu wrote on stderr says that KVM
// could not run the guest (nested KVM on real-mode code, for one).
func KVMFailed(line string) bool { return kvmError.MatchString(line) }

// FindFirmware returns a's UEFI firmware (code and variable store).
func FindFirmware(a arch.Arch) (Firmware, error) { return findFirmware(a) }
