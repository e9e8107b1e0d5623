package stagecache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func inputs(kv ...string) Inputs {
	var in Inputs
	for i := 0; i < len(kv); i += 2 {
		in.Add(kv[i], kv[i+1])
	}
	return in
}

func TestKeyChangesWithEveryInput(t *testing.T) {
	base := inputs("suite", "trixie", "architecture", "amd64", "packages", "a b")
	k := Key("", base)
	if Key("", inputs("packages", "a b", "architecture", "amd64", "suite", "trixie")) != k {
		t.Error("the order of inputs changed the key")
	}
	if Key("", base) != k {
		t.Error("the key is not stable")
	}
	seen := map[string]string{k: "base"}
	for i := range base {
		changed := append(Inputs{}, base...)
		changed[i].Value += "x"
		kk := Key("", changed)
		if prev, dup := seen[kk]; dup {
			t.Errorf("changing %s gives the key of %s", base[i].Name, prev)
		}
		seen[kk] = "changed " + base[i].Name
	}
	if Key("parent", base) == k {
		t.Error("the parent key does not change the key")
	}
	if Key("", append(append(Inputs{}, base...), Input{"extra", ""})) == k {
		t.Error("an added input (even empty) does not change the key")
	}
	// Values cannot be shifted between names to forge the same key.
	if Key("", inputs("a", "b=c")) == Key("", inputs("a=b", "c")) {
		t.Error("name/value boundaries are ambiguous")
	}
}

func TestAddFileFollowsContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hook.sh")
	os.WriteFile(p, []byte("echo one\n"), 0o755)
	var a Inputs
	a.AddFile("hook", p)
	os.WriteFile(p, []byte("echo two\n"), 0o755)
	var b Inputs
	b.AddFile("hook", p)
	if Key("", a) == Key("", b) {
		t.Error("a file's new content did not change the key")
	}
	os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0))
	var c Inputs
	c.AddFile("hook", p)
	if Key("", b) != Key("", c) {
		t.Error("the file's date changed the key (only content should)")
	}
	var d Inputs
	d.AddFile("hook", filepath.Join(t.TempDir(), "missing"))
	if !strings.HasPrefix(d[0].Value, "unreadable") {
		t.Errorf("missing file: %q", d[0].Value)
	}
}

func TestChanged(t *testing.T) {
	old := inputs("suite", "trixie", "packages", "a", "release", "1")
	new := inputs("suite", "trixie", "packages", "a b", "keyring", "x")
	got := Changed(old, new)
	want := []string{"keyring", "packages", "release"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
	if len(Changed(old, old)) != 0 {
		t.Error("no change reported as a change")
	}
}

func needTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
}

// tree makes a small root file system: files, a symlink, a hard link, an
// empty directory, modes and dates.
func tree(t *testing.T) string {
	root := t.TempDir()
	makeTree(root)
	return root
}

func makeTree(root string) {
	os.MkdirAll(filepath.Join(root, "etc/apt"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	os.MkdirAll(filepath.Join(root, "empty"), 0o700)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("debian\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/secret"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(root, "var/cache/apt/archives/big_1_amd64.deb"), []byte("deb"), 0o644)
	os.WriteFile(filepath.Join(root, "var/cache/apt/archives/lock"), nil, 0o640)
	os.Symlink("hostname", filepath.Join(root, "etc/link"))
	os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hard"))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(root, "etc/hostname"), old, old)
}

func listing(t *testing.T, root string) string {
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		target, _ := os.Readlink(p)
		mt := ""
		if !fi.IsDir() {
			mt = fi.ModTime().UTC().Format(time.RFC3339)
		}
		b.WriteString(strings.Join([]string{rel, fi.Mode().String(), target, mt, fmt.Sprint(st.Nlink, " ", st.Uid, ":", st.Gid)}, " ") + "\n")
		return nil
	})
	return b.String()
}

func TestSaveRestoreRoundTrip(t *testing.T) {
	needTar(t)
	c, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	root := tree(t)
	in := inputs("suite", "trixie")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "packages", Inputs: in}
	if err := c.Save(context.Background(), e, root, []string{"./var/cache/apt/archives/*.deb"}); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Lookup(e.Key)
	if !ok || got.SHA256 == "" || got.Size == 0 || got.Stage != "packages" {
		t.Fatalf("lookup after save: %+v %v", got, ok)
	}
	out := t.TempDir()
	if err := c.Restore(context.Background(), got, out); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "var/cache/apt/archives/big_1_amd64.deb"))
	if a, b := listing(t, root), listing(t, out); a != b {
		t.Errorf("restored tree differs:\n--- saved\n%s--- restored\n%s", a, b)
	}
	// The restored tree is a copy: changing it leaves the entry alone.
	os.WriteFile(filepath.Join(out, "etc/hostname"), []byte("changed\n"), 0o644)
	out2 := t.TempDir()
	if err := c.Restore(context.Background(), got, out2); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(out2, "etc/hostname")); string(data) != "debian\n" {
		t.Errorf("entry changed through a restored tree: %q", data)
	}
	if l := c.Latest("img", "packages"); l == nil || l.Key != e.Key {
		t.Errorf("Latest = %+v", l)
	}
	if c.Latest("img", "bootstrap") != nil || c.Latest("other", "packages") != nil {
		t.Error("Latest found an entry of another stage or config")
	}
}

func TestCorruptEntryRefusedAndRemoved(t *testing.T) {
	needTar(t)
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	in := inputs("x", "1")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "bootstrap", Inputs: in}
	if err := c.Save(context.Background(), e, tree(t), nil); err != nil {
		t.Fatal(err)
	}
	// Flip one byte in the middle of the (compressed) archive.
	if e.Format != FormatTarZstd {
		t.Fatalf("saved as %q, want %q", e.Format, FormatTarZstd)
	}
	ar := e.archive()
	data, _ := os.ReadFile(ar)
	data[len(data)/2] ^= 0x55
	os.WriteFile(ar, data, 0o600)
	got, _ := c.Lookup(e.Key)
	err := c.Restore(context.Background(), got, t.TempDir())
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of a corrupt entry: %v", err)
	}
	if _, ok := c.Lookup(e.Key); ok {
		t.Error("corrupt entry still found")
	}
}

// A writer killed half way leaves a temporary directory that no lookup
// sees and that the next Open removes once its lock is free.
func TestInterruptedSaveNeverUsed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c, _ := Open(dir)
	key := Key("", inputs("x", "1"))
	tmp := filepath.Join(dir, tmpPrefix+key[:12]+"-123")
	os.MkdirAll(tmp, 0o700)
	lock, _ := os.Create(filepath.Join(tmp, lockName))
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, ArchiveName(FormatTarZstd)), []byte("half an archive"), 0o600)
	os.WriteFile(filepath.Join(tmp, metaName), []byte(`{"key":"`+key+`"}`), 0o600)
	if _, ok := c.Lookup(key); ok {
		t.Fatal("a half-written entry was found")
	}
	if l, _ := c.List(); len(l) != 0 {
		t.Fatalf("List shows a half-written entry: %v", l)
	}
	Open(dir) // the writer still holds its lock: left alone
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal("a live writer's directory was removed")
	}
	lock.Close() // the writer dies
	Open(dir)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("a dead writer's directory was not removed")
	}
}

func TestSaveCancelledLeavesNothing(t *testing.T) {
	needTar(t)
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := inputs("x", "1")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "bootstrap", Inputs: in}
	if err := c.Save(ctx, e, tree(t), nil); err == nil {
		t.Fatal("cancelled save succeeded")
	}
	ents, _ := os.ReadDir(c.Dir)
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestPrune(t *testing.T) {
	needTar(t)
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	var keys []string
	for i, name := range []string{"old", "mid", "new"} {
		in := inputs("n", name)
		e := &Entry{Key: Key("", in), Config: name, Stage: "bootstrap", Inputs: in}
		if err := c.Save(context.Background(), e, tree(t), nil); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-time.Duration(3-i) * 24 * time.Hour)
		os.Chtimes(e.archive(), when, when)
		keys = append(keys, e.Key)
	}
	removed, err := c.Prune(60*time.Hour, 0)
	if err != nil || len(removed) != 1 || removed[0].Config != "old" {
		t.Fatalf("prune by age: %v %v", removed, err)
	}
	l, _ := c.List()
	if len(l) != 2 || l[0].Config != "new" {
		t.Fatalf("after age prune: %v", l)
	}
	removed, _ = c.Prune(0, l[0].Size)
	if len(removed) != 1 || removed[0].Config != "mid" {
		t.Fatalf("prune by size kept the wrong entry: %v", removed)
	}
	if _, ok := c.Lookup(keys[2]); !ok {
		t.Error("the most recently used entry was pruned")
	}
}

// On a file system with reflinks (btrfs, in a file mounted in a private
// mount namespace) entries are reflinked trees, restored as copies.
func TestReflinkEntry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("no mkfs.btrfs")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "btrfs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	f, _ := os.Create(img)
	f.Truncate(256 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.btrfs: %v %s", err, out)
	}
	runtime.LockOSThread() // the mount namespace is this thread's, and its children's
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Skipf("no private mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount -o loop: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	root := filepath.Join(mnt, "work", "rootfs")
	os.MkdirAll(root, 0o755)
	makeTree(root)
	c, err := Open(filepath.Join(mnt, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	if !Reflinks(filepath.Dir(root), c.Dir) {
		t.Fatal("btrfs does not take reflinks here")
	}
	in := inputs("suite", "trixie")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "packages", Inputs: in}
	if err := c.Save(context.Background(), e, root, []string{"./var/cache/apt/archives/*.deb"}); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Lookup(e.Key)
	if !ok || got.Format != "reflink" || got.Size == 0 {
		t.Fatalf("entry: %+v", got)
	}
	out := filepath.Join(mnt, "work", "restored")
	os.Mkdir(out, 0o755)
	if err := c.Restore(context.Background(), got, out); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "var/cache/apt/archives/big_1_amd64.deb"))
	if a, b := listing(t, root), listing(t, out); a != b {
		t.Errorf("restored tree differs:\n--- saved\n%s--- restored\n%s", a, b)
	}
	os.WriteFile(filepath.Join(out, "etc/hostname"), []byte("changed\n"), 0o644)
	if data, _ := os.ReadFile(filepath.Join(got.Dir(), treeName, "etc/hostname")); string(data) != "debian\n" {
		t.Errorf("the entry changed through a restored tree: %q", data)
	}
	if l, _ := c.List(); len(l) != 1 {
		t.Errorf("List: %v", l)
	}
}

// TestSweepSparesEntryBeingLocked: another build's sweep never removes a
// temporary entry in the moment between its lock's creation and flock.
func TestSweepSparesEntryBeingLocked(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				c.sweep()
			}
		}
	}()
	var locks []*os.File
	for i := 0; i < 300; i++ {
		tmp, lock, err := c.newTemp(strings.Repeat("a", 12))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, lock)
		if err := os.WriteFile(filepath.Join(tmp, "x"), nil, 0o600); err != nil {
			t.Fatalf("a concurrent sweep removed a locked temporary entry (%d): %v", i, err)
		}
	}
	close(stop)
	<-done
	for _, l := range locks {
		l.Close()
	}
}

// A writer killed between making its directory and locking it leaves a
// directory under its new name: spared while young (another writer may be
// about to lock it), removed once old.
func TestSweepRemovesOldUnlockedNew(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	young := filepath.Join(dir, newPrefix+"aaaaaaaaaaaa-1")
	old := filepath.Join(dir, newPrefix+"aaaaaaaaaaaa-2")
	for _, d := range []string{young, old} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * newAge)
	os.Chtimes(old, past, past)
	c.sweep()
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a young directory being made was removed: %v", err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an abandoned directory was kept: %v", err)
	}
	// A writer's temporary entry, once its writer is killed, goes at once.
	tmp, lock, err := c.newTemp("bbbbbbbbbbbb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(tmp), tmpPrefix) {
		t.Fatalf("temporary entry %s", tmp)
	}
	lock.Close()
	c.sweep()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's entry was kept: %v", err)
	}
}

// TestSaveKeepsTheReserve: an entry whose writing would leave the file
// system with less than the cache's reserve is not saved, whether the
// disk is short from the start or becomes so while it is written, and
// nothing is left of it; an import stops the same way.
func TestSaveKeepsTheReserve(t *testing.T) {
	needTar(t)
	const total = 100 << 30 // a 100 GiB disk: a 5 GiB reserve
	if r := reserveOf(total); r != 5<<30 {
		t.Fatalf("reserve of a 100 GiB disk = %d", r)
	}
	if r := reserveOf(8 << 30); r != 2<<30 {
		t.Fatalf("reserve of an 8 GiB disk = %d, want the 2 GiB floor", r)
	}
	oldStat, oldCheck := statFS, reserveCheck
	t.Cleanup(func() { statFS, reserveCheck = oldStat, oldCheck })
	reserveCheck = 512 // look often: the test tree is small
	for name, freeAt := range map[string]func(call int) int64{
		"short from the start": func(int) int64 { return 4 << 30 },
		"short while writing":  func(call int) int64 { return map[bool]int64{true: 50 << 30, false: 4 << 30}[call == 1] },
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			statFS = func(string) (int64, int64, error) { calls++; return freeAt(calls), total, nil }
			c, _ := Open(filepath.Join(t.TempDir(), "cache"))
			in := inputs("x", name)
			e := &Entry{Key: Key("", in), Config: "img", Stage: "packages", Inputs: in}
			root := tree(t)
			// Data zstd cannot shrink, so that the archive is
			// written in many pieces.
			noise := make([]byte, 1<<20)
			rand.Read(noise)
			os.WriteFile(filepath.Join(root, "noise"), noise, 0o644)
			err := c.Save(context.Background(), e, root, nil)
			var full *NoSpaceError
			if !errors.As(err, &full) || full.Reserve != 5<<30 || full.Free != 4<<30 {
				t.Fatalf("Save on a full disk: %v, want a NoSpaceError", err)
			}
			if !strings.Contains(err.Error(), c.Dir+" has 4 GiB free") {
				t.Errorf("the error does not say what is free: %v", err)
			}
			if ents, _ := os.ReadDir(c.Dir); len(ents) != 0 {
				t.Errorf("left in the cache: %v", ents)
			}
		})
	}
	// Plenty of room: saved.
	statFS = func(string) (int64, int64, error) { return 50 << 30, total, nil }
	c, _ := Open(filepath.Join(t.TempDir(), "cache"))
	in := inputs("x", "room")
	e := &Entry{Key: Key("", in), Config: "img", Stage: "packages", Inputs: in}
	if err := c.Save(context.Background(), e, tree(t), nil); err != nil {
		t.Fatal(err)
	}
	// An import on a full disk stops too, and leaves nothing.
	statFS = func(string) (int64, int64, error) { return 1 << 30, total, nil }
	f, _ := os.Open(e.archive())
	defer f.Close()
	dst, _ := Open(filepath.Join(t.TempDir(), "other"))
	var full *NoSpaceError
	if err := dst.Import(context.Background(), e, f); !errors.As(err, &full) {
		t.Fatalf("Import on a full disk: %v, want a NoSpaceError", err)
	}
	if ents, _ := os.ReadDir(dst.Dir); len(ents) != 0 {
		t.Errorf("import left: %v", ents)
	}
}
