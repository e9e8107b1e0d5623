package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

// hookScript runs the hook as HOOK ROOTDIR IMAGE in a mount namespace of
// its own, with /proc mounted in ROOTDIR when it can be (for a chroot into
// it, such as update-initramfs); the namespace, and the mount with it, ends
// with the script, whatever kills it.
const hookScript = `set -u
root=$1 img=$2 hook=$3
if [ -d "$root/proc" ] && [ ! -e "$root/proc/self" ]; then
	mount -t proc proc "$root/proc" 2>/dev/null || echo "vmdeb: no /proc in the image hook's root (it cannot be mounted here)" >&2
fi
rc=0
"$hook" "$root" "$img" || rc=$?
[ "$rc" -eq 0 ] || echo "vmdeb: the image hook failed (exit status $rc)" >&2
umount -- "$root/proc" 2>/dev/null
exit $rc
`

// hookArgs is unshare's command line that runs h on the staged root tree
// and img (both absolute).
func hookArgs(h *Hook, root, img string) []string {
	return []string{"--mount", "--propagation", "private", "--", "sh", "-c", hookScript, "vmdeb-image-hook", root, img, h.Script}
}

// runHook runs the image hook (Options.Hook) once the image file has its
// partition table and before its file systems are made: ROOTDIR is the
// staged tree (a copy of the root file system, /boot and /boot/efi in it,
// not yet split onto their partitions), so what the hook changes there goes
// into the file systems made next; what it writes into the image outside
// the partitions (a board's boot loader in the gap before the first)
// stays, since the file systems are written at their partitions' offsets
// only. No file system of the image is mounted, so this works without
// loop devices or a kernel that knows FAT, and a reproducible hook keeps
// the image reproducible.
func (b *builder) runHook() error {
	h := b.o.Hook
	if h == nil {
		return nil
	}
	img := filepath.Join(b.tmp, b.img)
	ctx := b.ctx
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	b.log.Printf("running the image hook %s %s %s", h.Script, b.stage, img)
	env := append(append(b.epochEnv(), h.Env...), "VMDEB_ROOTFS="+b.stage, "VMDEB_IMAGE="+img)
	err := b.log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("unshare"), Args: hookArgs(h, b.stage, img), Dir: h.Dir, Env: env, Echo: true})
	// A daemon the hook started in the tree (chroot "$1" …) must not
	// outlive it, as the customise hook's do not.
	if kerr := chroot.KillProcesses(b.stage, b.log); kerr != nil {
		return fmt.Errorf("the image hook %s: %w", h.Script, errors.Join(err, kerr))
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && b.ctx.Err() == nil {
			return fmt.Errorf("the image hook %s did not finish within %s (hook-timeout)", h.Script, h.Timeout)
		}
		return fmt.Errorf("the image hook %s: %w", h.Script, err)
	}
	if fi, err := os.Stat(img); err != nil {
		return err
	} else if fi.Size() != b.o.Size {
		return fmt.Errorf("the image hook %s changed the image's size from %d to %d bytes (write into it with dd conv=notrunc)", h.Script, b.o.Size, fi.Size())
	}
	return nil
}
