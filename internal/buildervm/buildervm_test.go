package buildervm

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/arch"
	"vmdeb/internal/config"
	"vmdeb/internal/qemu"
)

func amd64(t *testing.T) arch.Arch {
	a, err := arch.Lookup("amd64")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The builder holds every package the build's host checks name: a tool
// added there without the builder learning of it fails here, not in a
// user's VM build.
func TestPackagesCoverBuildTools(t *testing.T) {
	files := []string{"../build/plan.go", "../live/live.go", "../disk/disk.go", "../disk/fs.go", "../bootstrap/bootstrap.go"}
	pkgRE := regexp.MustCompile(`(?:bin|file)\([^\n]*, "([a-z0-9.+-]+)"\)|need\["[^"]+"\] = "([^"]+)"|\{"[a-z0-9._-]+", "([a-z0-9.+-]+)"\}|Tools\(\) map\[string\]string \{[^}]*: "([^"]+)"\}`)
	// Not packages: {"gpt", "mbr"}, {"raw", "qcow2"}, a list of GRUB module files.
	ignore := map[string]bool{"coreutils": true, "mbr": true, "qcow2": true, "normal.mod": true}
	have := Packages(amd64(t))
	found := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pkgRE.FindAllStringSubmatch(string(src), -1) {
			pkg := strings.Join(m[1:], "")
			if ignore[pkg] {
				continue
			}
			found++
			if !slices.Contains(have, pkg) {
				t.Errorf("%s checks for a tool from %s, which the builder image does not install", f, pkg)
			}
		}
	}
	if found < 15 {
		t.Fatalf("found only %d tool checks in %v: has their form changed?", found, files)
	}
}

func TestConfigRendersValid(t *testing.T) {
	dir := t.TempDir()
	im := Image{Suite: "bookworm", Arch: amd64(t)}
	p, err := im.WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.Load(p)
	if err != nil {
		t.Fatalf("the builder config does not load: %v\n%s", err, im.Config())
	}
	if s.Suite != "bookworm" || s.Architecture != "amd64" || len(s.Outputs) != 1 || s.Outputs[0].Type != "disk" {
		t.Errorf("unexpected builder spec: %+v", s)
	}
	if !slices.Contains(s.Outputs[0].KernelParams, "init="+InitPath) {
		t.Errorf("the kernel does not start the builder's init: %v", s.Outputs[0].KernelParams)
	}
	hook, err := os.ReadFile(filepath.Join(dir, "hook.sh"))
	if err != nil || !strings.Contains(string(hook), InitPath) {
		t.Errorf("hook does not install the init script: %q %v", hook, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "init.sh")); string(b) != initScript {
		t.Error("init.sh is not the embedded init script")
	}
}

func TestKeyChanges(t *testing.T) {
	a := amd64(t)
	base := Image{Suite: "trixie", Arch: a}.Key("1.0", "abc")
	i386, _ := arch.Lookup("i386")
	for name, k := range map[string]string{
		"suite":   Image{Suite: "bookworm", Arch: a}.Key("1.0", "abc"),
		"arch":    Image{Suite: "trixie", Arch: i386}.Key("1.0", "abc"),
		"version": Image{Suite: "trixie", Arch: a}.Key("1.1", "abc"),
		"binary":  Image{Suite: "trixie", Arch: a}.Key("1.0", "abd"),
	} {
		if k == base {
			t.Errorf("the key does not change with the %s", name)
		}
	}
	if again := (Image{Suite: "trixie", Arch: a}).Key("1.0", "abc"); again != base {
		t.Errorf("the key is not stable: %s then %s", base, again)
	}
	if !strings.HasPrefix(base, "trixie-amd64-") {
		t.Errorf("key %q should start with the suite and architecture", base)
	}
}

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]int{"0\n": 0, "1": 1, " 2\n": 2, "130\n": 130} {
		if got, err := ParseStatus([]byte(in)); err != nil || got != want {
			t.Errorf("ParseStatus(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "256", "0 1"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
}

func TestQemuArgs(t *testing.T) {
	j := Job{Image: "/c/b,x.qcow2", Arch: amd64(t), Memory: 2 << 30, CPUs: 3, Scratch: 20 << 30,
		Shares: []Share{{Host: "/cfg", Guest: "/cfg", ReadOnly: true}, {Host: "/out", Guest: "/out"}}}
	args := strings.Join(j.qemuArgs("tcg", qemu.Firmware{}, "/tmp/job", "/usr/bin"), " ")
	for _, want := range []string{
		"-accel tcg,thread=single", "-m 2048", "-smp 3",
		"file=/c/b,,x.qcow2,if=virtio,format=qcow2,snapshot=on",
		"file=/dev/fd/3,if=none,id=scratch,format=raw,cache=unsafe,discard=unmap,werror=report,rerror=report",
		"serial=vmdeb-scratch,addr=0x10",
		"-virtfs local,path=/tmp/job,mount_tag=vmdeb-job,security_model=none,multidevs=remap ",
		"path=/usr/bin,mount_tag=vmdeb-bin,security_model=none,multidevs=remap,readonly=on",
		"path=/cfg,mount_tag=vmdeb0,security_model=none,multidevs=remap,readonly=on",
		"path=/out,mount_tag=vmdeb1,security_model=none,multidevs=remap -",
		"-no-reboot",
	} {
		if !strings.Contains(args+" -", want) {
			t.Errorf("qemu arguments lack %q:\n%s", want, args)
		}
	}
	if got, want := j.mounts(), "vmdeb0 ro /cfg\nvmdeb1 rw /out\n"; got != want {
		t.Errorf("mounts = %q, want %q", got, want)
	}
}

func TestWriteJobRefusesNewlines(t *testing.T) {
	j := Job{Binary: "/usr/bin/vmdeb", Args: []string{"build", "a\nb"}}
	if err := j.writeJob(t.TempDir()); err == nil {
		t.Error("an argument with a newline was accepted")
	}
	j = Job{Binary: "/usr/bin/vmdeb", Args: []string{"build", "/x y/c.yaml"}, Shares: []Share{{Host: "/x y", Guest: "/x y"}},
		Apt: map[string][]byte{"sources.list.d/debian.sources": []byte("Types: deb\n")}}
	dir := t.TempDir()
	if err := j.writeJob(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "args")); string(b) != "build\n/x y/c.yaml\n" {
		t.Errorf("args file: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "apt/sources.list.d/debian.sources")); string(b) != "Types: deb\n" {
		t.Errorf("apt file: %q", b)
	}
}

func TestPlanShares(t *testing.T) {
	got := PlanShares([]Share{
		{Host: "/w/cfg/out", Guest: "/w/cfg/out"},
		{Host: "/w/cfg/hooks", Guest: "/w/cfg/hooks", ReadOnly: true}, // inside the config dir: dropped
		{Host: "/w/cfg", Guest: "/w/cfg", ReadOnly: true},
		{Host: "/w/cfg/out/sub", Guest: "/w/cfg/out/sub"}, // inside a writable share: dropped
		{Host: "/home/u/.cache/vmdeb/debs", Guest: "/var/cache/vmdeb/debs"},
		{Host: "/w/cfg/", Guest: "/w/cfg", ReadOnly: true}, // duplicate
	})
	want := []Share{
		{Host: "/w/cfg", Guest: "/w/cfg", ReadOnly: true},
		{Host: "/w/cfg/out", Guest: "/w/cfg/out"},
		{Host: "/home/u/.cache/vmdeb/debs", Guest: "/var/cache/vmdeb/debs"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("PlanShares:\n got %+v\nwant %+v", got, want)
	}
}

func TestWatcher(t *testing.T) {
	var out strings.Builder
	w := &watcher{console: &out, ready: make(chan struct{})}
	w.Write([]byte("[    1.0] kernel noise\r\nvmdeb-builder: ready (6.12, 2 CPUs)\r\nvmdeb 1: building x\r\n==> boot"))
	w.Write([]byte("strap\r\nwrite /scratch/work/vmdeb-1/rootfs/usr/lib/x: no space left on device\r\nvmdeb-bui"))
	w.Write([]byte("lder: ex"))
	w.Write([]byte("it 1\r\n[  541.1] sysrq: Power Off\r\n"))
	select {
	case <-w.ready:
	default:
		t.Error("ready marker not seen")
	}
	if strings.Contains(out.String(), "kernel noise") || strings.Contains(out.String(), "vmdeb-bui") || strings.Contains(out.String(), "Power Off") {
		t.Errorf("boot messages or the exit marker reached the console:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "==> bootstrap\r\n") {
		t.Errorf("the build's output is not passed on whole:\n%q", out.String())
	}
	if !w.noSpace || !w.noSpaceScratch {
		t.Error("a full scratch disk was not noticed")
	}
	if !strings.Contains(w.last(), "kernel noise") {
		t.Errorf("the last lines lack the boot messages:\n%s", w.last())
	}
	w = &watcher{console: &out, ready: make(chan struct{})}
	w.Write([]byte("fallocate: fallocate failed: No space left on device\n"))
	if !w.noSpace || w.noSpaceScratch {
		t.Errorf("a full disk that the line does not name: noSpace %v, noSpaceScratch %v", w.noSpace, w.noSpaceScratch)
	}
}
