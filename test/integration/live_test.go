package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// copyExamples copies examples/ into dir so a test can change the config.
func copyExamples(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", filepath.Join(repo(t), "examples")+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// checkReport reads a build's --report: it succeeded, and lists exactly
// the outputs want (path: type), each with its size and the digest
// SHA256SUMS in dir holds.
func checkReport(t *testing.T, file, dir string, want map[string]string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("build report: %v", err)
	}
	var rep struct {
		OK      bool
		Stages  []struct{ Name string }
		Outputs []struct {
			Type, Path, SHA256 string
			Size               int64
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("build report: %v\n%s", err, data)
	}
	if !rep.OK || len(rep.Stages) == 0 || len(rep.Outputs) != len(want) {
		t.Errorf("build report: %s", data)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	for _, o := range rep.Outputs {
		fi, err := os.Stat(o.Path)
		if want[o.Path] != o.Type || err != nil || fi.Size() != o.Size {
			t.Errorf("build report: %s %s (%d bytes): want type %q, %v", o.Type, o.Path, o.Size, want[o.Path], err)
		}
		if !strings.Contains(string(sums), o.SHA256+"  "+filepath.Base(o.Path)+"\n") {
			t.Errorf("build report: %s's digest %q is not SHA256SUMS's", o.Path, o.SHA256)
		}
	}
}

// TestLiveMinimal builds the bundled example as a user would, checks the
// image's contents against the seed's rules and boots it under BIOS and
// UEFI to a login prompt.
func TestLiveMinimal(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	cfg := filepath.Join(dir, "live-minimal.yaml")
	// The image must end up pointing at its own mirror, not the build's.
	const aptMirror = "http://debian.invalid/debian"
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(data, []byte("apt-mirror: "+aptMirror+"\n")...), 0o644)
	// The hook installs, in two apt runs, two packages that each add to
	// the initramfs: their requests are put off until the hook ends, and
	// the initramfs is made once more, with both.
	hook := filepath.Join(dir, "hooks", "minimal.sh")
	data, _ = os.ReadFile(hook)
	os.WriteFile(hook, append(data, []byte("chroot \"$1\" apt-get install -y -q dmsetup\nchroot \"$1\" apt-get install -y -q lvm2\n")...), 0o755)

	chk := run(t, ctx, "check", "--json", cfg)
	if chk.code != 0 {
		t.Fatalf("check failed: %s", chk.stderr)
	}
	var plan struct {
		Plan struct{ Mirror string }
	}
	if err := json.Unmarshal([]byte(chk.stdout), &plan); err != nil || plan.Plan.Mirror == "" {
		t.Fatalf("check --json does not say which mirror (%v): %s", err, chk.stdout)
	}
	buildMirror := plan.Plan.Mirror

	reportFile := filepath.Join(t.TempDir(), "report.json")
	stages := t.TempDir() // for the hook-only rebuild below
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, "--stage-cache", stages, "--report", reportFile, cfg)
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	iso := filepath.Join(out, "debian-live-minimal-amd64.iso")
	stem := filepath.Join(out, "debian-live-minimal-amd64")
	checkReport(t, reportFile, out, map[string]string{iso: "live-iso", stem + ".packages": "manifest",
		stem + ".spdx.json": "sbom-spdx", stem + ".cdx.json": "sbom-cyclonedx"})
	checkSBOMs(t, stem)
	// Its squashfs was made through the block cache (the boot below reads
	// it with the guest's kernel).
	if b := squashfsBlocks(t, reportFile); b.Blocks < 1000 || b.Reused+b.Compressed == 0 {
		t.Errorf("the squashfs's blocks: %+v", b)
	}
	for _, f := range []string{iso, filepath.Join(out, "debian-live-minimal-amd64.packages"), filepath.Join(out, "SHA256SUMS"), filepath.Join(out, "debian-live-minimal.build.log")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = out
	if o, err := sums.CombinedOutput(); err != nil {
		t.Errorf("SHA256SUMS does not check: %v\n%s", err, o)
	}
	man, _ := os.ReadFile(filepath.Join(out, "debian-live-minimal-amd64.packages"))
	for _, p := range []string{"live-boot\t", "live-config\t", "sudo\t", "task-english\t", "linux-image-amd64\t"} {
		if !strings.Contains(string(man), p) {
			t.Errorf("manifest lacks %q", p)
		}
	}
	log, _ := os.ReadFile(filepath.Join(out, "debian-live-minimal.build.log"))
	if strings.Contains(string(log), "user:live") || regexp.MustCompile(`password.*\blive\b`).Match(log) {
		t.Error("the build log shows the user's password")
	}
	if !strings.Contains(string(log), "Setting up live-boot") {
		t.Error("the build log does not show apt's package steps")
	}
	// One initramfs per kernel and apt-running stage: the kernel's own
	// request and live-boot's were put off and made into one at the end
	// of the packages stage, the hook's two into one when it ended (and
	// the image boots with it below).
	if n := strings.Count(string(log), "update-initramfs: Generating /boot/initrd.img-"); n != 2 {
		t.Errorf("the initramfs was made %d times, not twice (once after the packages, once after the hook)", n)
	}
	if n := strings.Count(string(log), "update-initramfs: put off by vmdeb"); n < 4 {
		t.Errorf("the build log shows %d requests for an initramfs put off, not at least 4", n)
	}

	checkSquashfs(t, iso, buildMirror, aptMirror)

	// vmdeb shell runs a command in the ISO's root without booting it.
	t.Run("shell", func(t *testing.T) {
		shellMu.Lock()
		defer shellMu.Unlock()
		for _, c := range [][]string{{"dpkg", "-l", "sudo"}, {"cat", "/etc/os-release"}} {
			r := run(t, ctx, append([]string{"shell", iso, "--"}, c...)...)
			if r.code != 0 {
				t.Errorf("vmdeb shell %s -- %v: exit %d\n%s", iso, c, r.code, r.stderr)
			}
		}
		r := run(t, ctx, "shell", iso, "--", "dpkg", "-l", "sudo")
		if !strings.Contains(r.stdout, "ii  sudo") {
			t.Errorf("dpkg -l sudo in the ISO's root: %s", r.stdout)
		}
		// The initramfs made after the hook has what the hook's
		// packages add to it.
		r = run(t, ctx, "shell", iso, "--", "sh", "-c", "lsinitramfs /boot/initrd.img-*")
		if !strings.Contains(r.stdout, "sbin/lvm") || !strings.Contains(r.stdout, "sbin/dmsetup") {
			t.Errorf("the initramfs lacks lvm or dmsetup, which the hook installed (exit %d): %s", r.code, tail(r.stdout+r.stderr, 20))
		}
		if r := run(t, ctx, "shell", iso, "--", "ls", "/etc/apt/apt.conf.d"); strings.Contains(r.stdout, "vmdeb") {
			t.Errorf("the build's apt configuration is left in the image: %s", r.stdout)
		}
		assertShellClean(t, out)
	})

	// A hook-only rebuild, from the stage cache this build filled: its
	// squashfs takes most blocks from the block cache (the hook's new
	// file, and the initramfs its packages make again, are compressed
	// anew), lists the same files as the full build's but for the hook's
	// new one, and is what the boots below start.
	full := imageListing(t, iso)
	os.WriteFile(hook, append(append(data, []byte("chroot \"$1\" apt-get install -y -q dmsetup\nchroot \"$1\" apt-get install -y -q lvm2\n")...),
		[]byte("echo rebuilt > \"$1/etc/vmdeb-rebuilt\"\n")...), 0o755)
	rebuildReport := filepath.Join(t.TempDir(), "rebuild.json")
	if r := run(t, ctx, "build", "--outdir", out, "--workdir", work, "--stage-cache", stages, "--report", rebuildReport, cfg); r.code != 0 {
		t.Fatalf("hook-only rebuild failed (%d):\n%s", r.code, r.stderr)
	}
	if !strings.Contains(readFile(t, filepath.Join(out, "debian-live-minimal.build.log")), "stage cache: packages restored") {
		t.Errorf("the hook-only rebuild did not start from the cached packages stage")
	}
	if b := squashfsBlocks(t, rebuildReport); b.Reused < b.Blocks/2 || b.Compressed == 0 || b.Compressed > b.Blocks/4 {
		t.Errorf("the hook-only rebuild's squashfs blocks: %+v", b)
	}
	if got := imageFile(t, iso, "etc/vmdeb-rebuilt"); got != "rebuilt\n" {
		t.Errorf("the rebuilt hook's mark: %q", got)
	}
	if d := diffLines(full, imageListing(t, iso)); strings.HasPrefix(d, "- ") || strings.Contains(d, "\n- ") || !strings.Contains(d, "+ -rw-r--r-- 0/0 squashfs-root/etc/vmdeb-rebuilt") {
		t.Errorf("the rebuilt image lacks files of the full build's, or the hook's mark:\n%s", d)
	}

	t.Run("boot-bios", func(t *testing.T) {
		b := run(t, ctx, "boot", "--timeout", "8m", iso)
		if b.code != 0 {
			t.Fatalf("BIOS boot did not reach a login prompt:\n%s", b.stderr)
		}
	})
	// UEFI as a PC sold today starts it: Secure Boot enforced with
	// Microsoft's keys, through Debian's signed shim, GRUB and kernel.
	t.Run("boot-uefi-secure-boot", func(t *testing.T) {
		b := run(t, ctx, "boot", "--secure-boot", "--timeout", "8m", "--login", "user", "--password", "live",
			"--run", "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c; cat /etc/vmdeb-rebuilt", iso)
		if b.code != 0 {
			t.Fatalf("the Secure Boot boot did not reach a login prompt:\n%s", b.stderr)
		}
		// The variable's attributes (4 bytes), then its value: 1 = on.
		if !regexp.MustCompile(`(?m)^\s*\d+\s+\d+\s+\d+\s+\d+\s+1\s*$`).MatchString(b.stdout) {
			t.Errorf("the booted system does not see Secure Boot on:\n%s", b.stdout)
		}
		if !regexp.MustCompile(`(?m)^rebuilt\s*$`).MatchString(b.stdout) {
			t.Errorf("the booted system is not the hook-only rebuild's (no /etc/vmdeb-rebuilt):\n%s", b.stdout)
		}
	})
}

// checkSquashfs looks inside the image's root file system.
func checkSquashfs(t *testing.T, iso, buildMirror, aptMirror string) {
	t.Helper()
	tmp := t.TempDir()
	sq := filepath.Join(tmp, "filesystem.squashfs")
	if o, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live/filesystem.squashfs", sq).CombinedOutput(); err != nil {
		t.Fatalf("extracting the squashfs: %v\n%s", err, o)
	}
	list, err := exec.Command("unsquashfs", "-l", sq).Output()
	if err != nil {
		t.Fatalf("unsquashfs -l: %v", err)
	}
	for _, gone := range []string{"/usr/sbin/policy-rc.d", ".vmdeb-orig", "/var/log/dpkg.log", "/var/log/apt/term.log"} {
		if strings.Contains(string(list), gone) {
			t.Errorf("the image still has %s", gone)
		}
	}
	root := filepath.Join(tmp, "root")
	if o, err := exec.Command("unsquashfs", "-no-progress", "-d", root, sq).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, o)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Errorf("image: %v", err)
		}
		return string(b)
	}
	if !regexp.MustCompile(`(?m)^user:x:\d+:\d+:.*:/home/user:/bin/bash$`).MatchString(read("etc/passwd")) {
		t.Error("user is not in /etc/passwd")
	}
	if !regexp.MustCompile(`(?m)^sudo:x:\d+:(.*,)?user(,.*)?$`).MatchString(read("etc/group")) {
		t.Error("user is not in the sudo group")
	}
	shadow := read("etc/shadow")
	if !regexp.MustCompile(`(?m)^root:!`).MatchString(shadow) {
		t.Errorf("root is not locked: %s", firstLine(shadow, "root:"))
	}
	if !regexp.MustCompile(`(?m)^user:\$[^:]+\$[^:]+:`).MatchString(shadow) {
		t.Errorf("user has no hashed password: %s", firstLine(shadow, "user:"))
	}
	if strings.Contains(shadow, ":live:") {
		t.Error("the password is stored in clear")
	}
	src := read("etc/apt/sources.list.d/debian.sources")
	uris := regexp.MustCompile(`(?m)^URIs: (\S+)$`).FindAllStringSubmatch(src, -1)
	if len(uris) == 0 || uris[0][1] != aptMirror {
		t.Errorf("image sources do not use the apt-mirror %s:\n%s", aptMirror, src)
	}
	for _, u := range uris {
		if u[1] == buildMirror && buildMirror != aptMirror {
			t.Errorf("image sources still point at the build mirror:\n%s", src)
		}
	}
	if !strings.Contains(src, "trixie-security") || !strings.Contains(src, "trixie-updates") {
		t.Errorf("a stable suite's image lacks security or updates:\n%s", src)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/apt/sources.list")); err == nil {
		if b := read("etc/apt/sources.list"); strings.Contains(b, buildMirror) {
			t.Errorf("sources.list still names the build mirror: %s", b)
		}
	}
	if strings.TrimSpace(read("etc/resolv.conf")) != "" {
		t.Errorf("the build's resolv.conf was left in the image")
	}
	if read("etc/machine-id") != "" {
		t.Error("machine-id is not empty")
	}
	hook := read("etc/vmdeb-hook")
	if !strings.Contains(hook, "arch=amd64") || !strings.Contains(hook, "hook=minimal") {
		t.Errorf("hook marker: %q", hook)
	}
	if strings.TrimSpace(read("etc/hostname")) != "debian" {
		t.Error("hostname not set")
	}
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_Packages"))
	if len(lists) > 0 {
		t.Errorf("apt lists of the build mirror left: %v", lists)
	}
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// checkSBOMs reads the SBOMs beside an output (STEM.spdx.json and
// STEM.cdx.json): each lists every package of the manifest STEM.packages,
// with its purl.
func checkSBOMs(t *testing.T, stem string) {
	t.Helper()
	man, err := os.ReadFile(stem + ".packages")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(man)), "\n") {
		name, _, _ := strings.Cut(l, "\t")
		want[strings.SplitN(name, ":", 2)[0]] = true
	}
	var spdx struct {
		SPDXVersion string
		Packages    []struct {
			Name         string
			ExternalRefs []struct{ ReferenceType, ReferenceLocator string }
		}
		Relationships []struct{ RelationshipType string }
	}
	var cdx struct {
		SpecVersion string
		Components  []struct{ Name, Purl string }
	}
	for f, v := range map[string]any{stem + ".spdx.json": &spdx, stem + ".cdx.json": &cdx} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("SBOM: %v", err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("SBOM %s: %v", f, err)
		}
	}
	if spdx.SPDXVersion != "SPDX-2.3" || cdx.SpecVersion != "1.5" {
		t.Errorf("SBOM versions: SPDX %q, CycloneDX %q", spdx.SPDXVersion, cdx.SpecVersion)
	}
	got := map[string]bool{}
	for _, c := range cdx.Components {
		got[c.Name] = true
		if !strings.HasPrefix(c.Purl, "pkg:deb/debian/"+c.Name+"@") {
			t.Errorf("CycloneDX: %s's purl is %q", c.Name, c.Purl)
		}
	}
	for n := range want {
		if !got[n] {
			t.Errorf("CycloneDX SBOM lacks %s", n)
		}
	}
	contains := 0
	for _, r := range spdx.Relationships {
		if r.RelationshipType == "CONTAINS" {
			contains++
		}
	}
	if len(spdx.Packages) != len(cdx.Components)+1 || contains != len(cdx.Components) {
		t.Errorf("SPDX: %d packages, %d CONTAINS; CycloneDX: %d components", len(spdx.Packages), contains, len(cdx.Components))
	}
}
