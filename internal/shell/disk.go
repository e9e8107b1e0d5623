package shell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Partition is a partition's place in a disk image, in bytes.
type Partition struct {
	Name         string
	Offset, Size int64
}

// GPT and MBR partition types that never hold the root file system.
var notRoot = map[string]bool{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": true, // EFI system partition
	"21686148-6449-6E6F-744E-656564454649": true, // BIOS boot partition
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": true, // Linux swap
	"ef":                                   true, "82": true, "ee": true, "5": true, "f": true, "85": true,
}

// RootPartition picks the root partition from sfdisk --json's description
// of a disk image: on a GPT the one named "root" (as vmdeb names it),
// otherwise the last partition that is no EFI system, BIOS boot, swap or
// extended partition: vmdeb puts the root last.
func RootPartition(sfdiskJSON []byte) (Partition, error) {
	var d struct {
		Table struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(sfdiskJSON, &d); err != nil {
		return Partition{}, fmt.Errorf("reading the partition table: %w", err)
	}
	ss := d.Table.SectorSize
	if ss == 0 {
		ss = 512
	}
	found := -1
	for i, p := range d.Table.Partitions {
		if p.Name == "root" {
			found = i
			break
		}
		if !notRoot[strings.ToUpper(p.Type)] && !notRoot[strings.ToLower(p.Type)] {
			found = i
		}
	}
	if found < 0 {
		return Partition{}, errors.New("no root partition in its partition table")
	}
	p := d.Table.Partitions[found]
	return Partition{Name: p.Name, Offset: p.Start * ss, Size: p.Size * ss}, nil
}

// exportQcow2 shows the qcow2 image as a raw disk image, a file on the
// stage: qemu-storage-daemon exports it through FUSE (writes go to the
// qcow2 with --writable, are refused without). Its process is stopped
// after the mounts on it are gone, so it writes the qcow2's metadata.
func (s *session) exportQcow2(ctx context.Context) (string, error) {
	raw := filepath.Join(s.stage, "disk.raw")
	if err := os.WriteFile(raw, nil, 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command("qemu-storage-daemon", QSDArgs(s.t.Path, raw, s.o.Writable)...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	// The daemon gets a mount namespace of its own, where its FUSE mount
	// is; this one reaches the file through /proc/PID/root. Were the
	// daemon the last process of this namespace (a SIGKILL of vmdeb), it
	// would tear down the disk's file system, whose last writes go
	// through the loop device to its own FUSE export, and wait on itself
	// for ever. In its own namespace it holds only the export: dying, it
	// closes /dev/fuse, and the file system's writes fail instead of hang.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("qemu-storage-daemon (package qemu-system-common): %w", err)
	}
	raw = fmt.Sprintf("/proc/%d/root%s", cmd.Process.Pid, raw)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.push("stop qemu-storage-daemon", func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			return errors.New("did not stop on SIGTERM; killed")
		}
		return nil
	})
	// Ready when the FUSE file system is on the file.
	for {
		var st unix.Statfs_t
		if unix.Statfs(raw, &st) == nil && st.Type == unix.FUSE_SUPER_MAGIC {
			s.logf("exported %s as %s (qemu-storage-daemon)", s.t.Path, raw)
			return raw, nil
		}
		select {
		case err := <-exited:
			exited <- err
			return "", fmt.Errorf("qemu-storage-daemon could not export %s: %v: %s", s.t.Path, err, strings.TrimSpace(errOut.String()))
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// QSDArgs is qemu-storage-daemon's command line that exports the qcow2
// image at path as a raw image on the file at, writable or not. JSON
// options, so that no file name needs QEMU's comma escaping.
func QSDArgs(path, at string, writable bool) []string {
	ro := !writable
	file, _ := json.Marshal(map[string]any{"driver": "file", "node-name": "file", "filename": path, "read-only": ro})
	disk, _ := json.Marshal(map[string]any{"driver": "qcow2", "node-name": "disk", "file": "file", "read-only": ro})
	export, _ := json.Marshal(map[string]any{"type": "fuse", "id": "disk", "node-name": "disk", "mountpoint": at, "writable": writable})
	return []string{"--blockdev", string(file), "--blockdev", string(disk), "--export", string(export)}
}

var lbaLine = regexp.MustCompile(`File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*\d+\s*,\s*(\d+)\s*,`)

// isoFile is where the file name lies in the ISO at path: xorriso reports
// its first block and its size, so the squashfs inside is mounted where
// it is, through a loop device, not copied out.
func isoFile(ctx context.Context, path, name string) (offset, size int64, err error) {
	out, err := run(ctx, "xorriso", "-indev", path, "-find", name, "-exec", "report_lba", "--")
	if err != nil {
		return 0, 0, err
	}
	return ParseLBA(out, path, name)
}

// ParseLBA reads xorriso's report_lba of one file (one extent: mksquashfs
// output is written whole).
func ParseLBA(out []byte, path, name string) (offset, size int64, err error) {
	m := lbaLine.FindAllSubmatch(out, -1)
	if len(m) != 1 {
		return 0, 0, fmt.Errorf("%s: no %s in the ISO (or in %d pieces): is it a live ISO?", path, name, len(m))
	}
	lba, _ := strconv.ParseInt(string(m[0][1]), 10, 64)
	size, _ = strconv.ParseInt(string(m[0][2]), 10, 64)
	return lba * 2048, size, nil
}
