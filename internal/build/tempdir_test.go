package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Another user owns the output directory and, while the output is being
// made, renames vmdeb's temporary directory away and puts a link to a
// victim directory in its place. What vmdeb writes still lands in its own
// directory, publishing still takes the output's final name, the victim
// directory gets nothing, and the cleanup deletes nothing of the victim's.
func TestTempDirSwappedForALink(t *testing.T) {
	out, victim := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(victim, "keep"), []byte("victim\n"), 0o644)
	td, err := newTempDir(out, ".x.iso.vmdeb-tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer td.Remove()
	fi, err := os.Stat(filepath.Join(out, td.name))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("temporary directory: %v %v", fi, err)
	}
	// The swap.
	if err := os.Rename(filepath.Join(out, td.name), filepath.Join(out, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, td.name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(td.Path("x.iso"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(td.Path("tool-scratch"), []byte("scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(victim, "x.iso")); err == nil {
		t.Fatal("the output was written into the victim directory")
	}
	if err := td.Publish("x.iso", "x.iso"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "x.iso")); err != nil || string(b) != "image\n" {
		t.Fatalf("published output: %q %v", b, err)
	}
	if err := td.Remove(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(victim)
	if len(ents) != 1 || ents[0].Name() != "keep" {
		t.Errorf("victim directory changed: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(out, "moved")); len(ents) != 0 {
		t.Errorf("vmdeb's own files left in its moved directory: %v", ents)
	}
	if fi, err := os.Lstat(filepath.Join(out, td.name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the neighbour's link at the old name: %v %v (vmdeb removes only its own directory)", fi, err)
	}
	if err := td.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// Unswapped, the directory goes away entirely.
func TestTempDirRemove(t *testing.T) {
	out := t.TempDir()
	td, err := newTempDir(out, ".y.vmdeb-tmp")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(td.Path("a/b"), 0o755)
	os.WriteFile(td.Path("a/b/c"), nil, 0o644)
	if err := td.Remove(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
}

// TestOwnedAsShare: a directory of another owner is accepted only on 9p
// (a builder VM's share), and only when the share's directory has that
// owner too.
func TestOwnedAsShare(t *testing.T) {
	for _, c := range []struct {
		fs        string
		uid, puid uint32
		want      bool
	}{
		{"9p", 1001, 1001, true},
		{"9p", 1001, 0, false},
		{"ext4", 1001, 1001, false},
		{"", 0, 0, false},
	} {
		if got := ownedAsShare(c.fs, c.uid, c.puid); got != c.want {
			t.Errorf("ownedAsShare(%q, %d, %d) = %v, want %v", c.fs, c.uid, c.puid, got, c.want)
		}
	}
}

func TestMountinfoType(t *testing.T) {
	const mi = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:31 / /var/tmp/out rw,relatime - 9p vmdeb1 rw,trans=virtio
351 22 0:32 / /x rw - tmpfs tmpfs rw
`
	for id, want := range map[uint64]string{22: "ext4", 35: "9p", 351: "tmpfs", 3: "", 5: ""} {
		if got := mountinfoType(strings.NewReader(mi), id); got != want {
			t.Errorf("mount %d: %q, want %q", id, got, want)
		}
	}
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := mountType(int(d.Fd())); got == "" {
		t.Errorf("no mount type for a temporary directory")
	}
}

// A neighbour who swaps the new directory for a link (or takes it away)
// between its mkdir and its open makes vmdeb try another name; one who
// wins every time gets a refusal naming the directory, and nothing is
// written through the link.
func TestTempDirSwappedAsMade(t *testing.T) {
	out, victim := t.TempDir(), t.TempDir()
	swaps := 0
	afterMkdir = func(dir, name string) {
		if swaps >= 3 {
			return
		}
		swaps++
		os.Rename(filepath.Join(dir, name), filepath.Join(dir, "stolen-"+name))
		if swaps != 2 { // the second one is only taken away
			os.Symlink(victim, filepath.Join(dir, name))
		}
	}
	defer func() { afterMkdir = nil }()
	td, err := newTempDir(out, ".z.vmdeb-tmp")
	if err != nil {
		t.Fatalf("after %d swaps: %v", swaps, err)
	}
	if err := os.WriteFile(td.Path("z"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(out, td.name)); err != nil || swaps != 3 {
		t.Errorf("the fourth directory: %v (swaps %d)", err, swaps)
	}
	td.Remove()
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Errorf("written through the neighbour's link: %v", ents)
	}

	afterMkdir = func(dir, name string) {
		os.Rename(filepath.Join(dir, name), filepath.Join(dir, "stolen-"+name))
		os.Symlink(victim, filepath.Join(dir, name))
	}
	_, err = newTempDir(out, ".z.vmdeb-tmp")
	if err == nil || !strings.Contains(err.Error(), out+": another user replaced each of the 20 directories") || !strings.Contains(err.Error(), "replaced as it was made") {
		t.Errorf("a neighbour who always wins: %v", err)
	}
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Errorf("written through the neighbour's link: %v", ents)
	}
}
