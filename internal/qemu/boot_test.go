package qemu

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vmdeb/internal/arch"
)

// These tests boot real qemu; they are skipped where it is not installed.

func needQemu(t *testing.T, bin string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("%s not installed", bin)
	}
}

// bootSector writes an MBR image: code (at 0x7c00), then data, zero
// padding, and the 55 AA signature. The image is padded to 1 MiB because
// SeaBIOS cannot read a one-sector virtio disk ("could not read the boot
// disk").
func bootSector(t *testing.T, code string, data ...string) string {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(code, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		b = append(b, d...)
	}
	if len(b) > 510 {
		t.Fatalf("boot sector too big: %d bytes", len(b))
	}
	b = append(b, make([]byte, 510-len(b))...)
	b = append(b, 0x55, 0xaa)
	b = append(b, make([]byte, 1<<20-512)...)
	p := filepath.Join(t.TempDir(), "boot.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loginSector prints "debian login: \n" on COM1 and halts:
//
//	xor ax,ax; mov ds,ax; mov dx,0x3f8; mov si,0x7c15
//	l: lodsb; test al,al; jz h; out dx,al; jmp l
//	h: hlt; jmp h
func loginSector(t *testing.T) string {
	return bootSector(t, "31 C0 8E D8 BA F8 03 BE 15 7C AC 84 C0 74 03 EE EB F8 F4 EB FD", "debian login: \n\x00")
}

// panicSector prints a Linux kernel's panic line on COM1 and halts, as a
// panicked kernel does.
func panicSector(t *testing.T) string {
	return bootSector(t, "31 C0 8E D8 BA F8 03 BE 15 7C AC 84 C0 74 03 EE EB F8 F4 EB FD",
		"[    2.880826] Kernel panic - not syncing: Fatal exception in interrupt\n\x00")
}

// silentSector halts at once and prints nothing.
func silentSector(t *testing.T) string {
	return bootSector(t, "F4 EB FD")
}

// shellSector plays a guest with a getty and a shell on COM1 (assembled
// from the GNU as source below, strings placed where the code expects
// them): it prints a login prompt, reads the login name (echoed), a
// password (not echoed), shows a root prompt, reads three lines (the
// wrapped command, echoed) and answers with fixed output and status 3.
//
//	_start: xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7c00,%sp; cld
//	        mov $login,%si; call puts; mov $1,%bl; call readline
//	        mov $pass,%si; call puts; mov $0,%bl; call readline
//	        mov $prompt,%si; call puts; mov $1,%bl
//	        call readline; call readline; call readline
//	        mov $output,%si; call puts
//	halt:   hlt; jmp halt
//	puts:   lodsb; test %al,%al; jz 1f; mov $0x3f8,%dx; out %al,%dx; jmp puts
//	1:      ret
//	readline: mov $0x3fd,%dx; in %dx,%al; test $1,%al; jz readline
//	        mov $0x3f8,%dx; in %dx,%al; cmp $10,%al; je 2f; cmp $13,%al; je 2f
//	        test %bl,%bl; jz readline; out %al,%dx; jmp readline
//	2:      mov $crlf,%si; jmp puts
func shellSector(t *testing.T) string {
	const code = "31c08ed88ed0bc007cfcbe667ce82a00b301e83100be9b7ce81f00b300e82600" +
		"bea67ce81400b301e81b00e81800e81500bebe7ce80300f4ebfdac84c07406ba" +
		"f803eeebf5c3bafd03eca80174f8baf803ec3c0a740b3c0d740784db74e8eeeb" +
		"e5be097debd4"
	strs := []string{
		"\r\nDebian GNU/Linux 12 debian ttyS0\r\n\r\ndebian login: ", // 0x7c66
		"Password: ",                 // 0x7c9b
		"\x1b[?2004hroot@debian:~# ", // 0x7ca6
		"VMDEB-BEGIN\r\nhello from the guest\r\nVMDEB-STATUS=3\r\n\x1b[?2004hroot@debian:~# ", // 0x7cbe
		"\r\n", // 0x7d09
	}
	var data []string
	for _, s := range strs {
		data = append(data, s+"\x00")
	}
	if n := len(code)/2 + len(strings.Join(data, "")); n != 0x7d09+3-0x7c00 {
		t.Fatalf("shell sector strings moved: %d bytes", n)
	}
	return bootSector(t, code, data...)
}

// fakeISO is an image DetectImage takes for an ISO, with nothing bootable.
func fakeISO(t *testing.T) string {
	t.Helper()
	b := make([]byte, 1<<20)
	copy(b[32769:], "CD001")
	p := filepath.Join(t.TempDir(), "fake.iso")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuProcesses lists running qemu-system processes whose command line
// names path.
func qemuProcesses(t *testing.T, path string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, path) {
			found = append(found, d+": "+cmd)
		}
	}
	return found
}

func noQemuLeft(t *testing.T, path string) {
	t.Helper()
	// Boot reaps qemu before it returns, so there is no grace period.
	if left := qemuProcesses(t, path); len(left) > 0 {
		t.Errorf("qemu left running:\n%s", strings.Join(left, "\n"))
	}
}

// logger collects Boot's status lines.
type logger struct {
	mu    sync.Mutex
	lines []string
}

func (l *logger) log(t *testing.T) func(string, ...any) {
	return func(format string, a ...any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		s := fmt.Sprintf(format, a...)
		l.lines = append(l.lines, s)
		t.Log(s)
	}
}

func (l *logger) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func resetVerdict() {
	kvmVerdict.Lock()
	defer kvmVerdict.Unlock()
	kvmVerdict.known, kvmVerdict.ok, kvmVerdict.why = false, false, ""
}

func amd64(t *testing.T) arch.Arch {
	needQemu(t, "qemu-system-x86_64")
	return lookup(t, "amd64")
}

func TestBootTCG(t *testing.T) {
	a := amd64(t)
	img := loginSector(t)
	var con bytes.Buffer
	start := time.Now()
	res, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: time.Minute, Console: &con})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %s", time.Since(start))
	if res.Accel != "tcg" || res.Matched != "debian login:" || res.Elapsed <= 0 || res.Elapsed > time.Minute {
		t.Errorf("result %+v", res)
	}
	if con.String() != "debian login: \n" {
		t.Errorf("console got %q", con.String())
	}
	noQemuLeft(t, img)
}

// A guest kernel's panic ends the attempt at once instead of after the
// timeout. Under TCG the boot is tried once more (qemu's emulation can
// make a kernel panic), and a second panic fails it, saying so; a boot
// that lets the guest write to its disk is not repeated.
func TestBootKernelPanic(t *testing.T) {
	a := amd64(t)
	img := panicSector(t)
	for _, writable := range []bool{false, true} {
		var logs []string
		var mu sync.Mutex
		logf := func(format string, x ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, fmt.Sprintf(format, x...))
		}
		start := time.Now()
		_, err := Boot(context.Background(), Options{Image: img, Kind: KindRaw, Arch: a, Accel: "tcg", Memory: 128, Timeout: 5 * time.Minute, Writable: writable, Log: logf})
		took := time.Since(start)
		if err == nil {
			t.Fatal("a panicking guest booted")
		}
		if took > 90*time.Second {
			t.Errorf("writable %v: the panic was noticed after %s", writable, took)
		}
		retried := strings.Contains(strings.Join(logs, "\n"), "panicked under TCG")
		twice := strings.Contains(err.Error(), "panicked on two boots under TCG")
		if retried == writable || twice == writable {
			t.Errorf("writable %v: retried %v, error %v; log:\n%s", writable, retried, err, strings.Join(logs, "\n"))
		}
		if !strings.Contains(err.Error(), `the guest's kernel panicked ("[    2.880826] Kernel panic - not syncing: Fatal exception in interrupt")`) {
			t.Errorf("writable %v: error %v", writable, err)
		}
	}
	noQemuLeft(t, img)
}

func TestBootTimeoutShowsConsole(t *testing.T) {
	a := amd64(t)
	img := loginSector(t)
	start := time.Now()
	_, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: 5 * time.Second, Expect: "nomatch"})
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %s with a 5s timeout", took)
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"timed out after 5s", `"nomatch"`, "    debian login:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	noQemuLeft(t, img)
}

func TestBootCancel(t *testing.T) {
	a := amd64(t)
	img := loginSector(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2*time.Second, cancel)
	start := time.Now()
	_, err := Boot(ctx, Options{Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: time.Minute, Expect: "nomatch"})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("returned %s after the start, 2s after the cancel would be late", took)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	noQemuLeft(t, img)
}

func TestBootAuto(t *testing.T) {
	a := amd64(t)
	resetVerdict()
	defer resetVerdict()
	img := loginSector(t)
	var l logger
	res, err := Boot(context.Background(), Options{Image: img, Arch: a, Memory: 128, Timeout: time.Minute, Log: l.log(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted with %s in %s", res.Accel, res.Elapsed)
	if res.Accel != "kvm" && res.Accel != "tcg" {
		t.Errorf("accel %q", res.Accel)
	}
	if kvmUsable(a) != nil && res.Accel != "tcg" {
		t.Errorf("used %s without a usable /dev/kvm", res.Accel)
	}
	noQemuLeft(t, img)
}

func TestBootRun(t *testing.T) {
	a := amd64(t)
	img := shellSector(t)
	var con bytes.Buffer
	res, err := Boot(context.Background(), Options{
		Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: time.Minute,
		Run: "uname -a", Login: "root", Password: "secret", Console: &con,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.RunOutput != "hello from the guest" || res.RunStatus != 3 {
		t.Errorf("got output %q, status %d", res.RunOutput, res.RunStatus)
	}
	// The guest echoes the login name and the command but not the password.
	out := con.String()
	if !strings.Contains(out, "login: root\r\n") || !strings.Contains(out, "uname -a") || strings.Contains(out, "secret") {
		t.Errorf("console:\n%s", out)
	}
	noQemuLeft(t, img)
}

func TestBootRunNeverAnswers(t *testing.T) {
	a := amd64(t)
	img := loginSector(t) // a login prompt, then nothing reads the console
	_, err := Boot(context.Background(), Options{
		Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: 5 * time.Second,
		Run: "true", Login: "root", Password: "x",
	})
	if err == nil || !strings.Contains(err.Error(), "password prompt") {
		t.Errorf("got %v, want a timeout waiting for the password prompt", err)
	}
	noQemuLeft(t, img)
}

// ovmfCheck skips unless OVMF is installed.
func ovmfCheck(t *testing.T, a arch.Arch) {
	t.Helper()
	if _, err := findFirmware(a); err != nil {
		t.Skip(err)
	}
}

// readPNG decodes the picture at path.
func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	img := readPNG(t, path)
	if b := img.Bounds(); b.Dx() < 320 || b.Dy() < 200 {
		t.Errorf("screenshot is only %v", b)
	}
}

// OVMF cannot boot the BIOS boot sector, so it reports that on the serial
// console, which proves the firmware pair and the pflash options work.
func TestBootUEFIScreenshot(t *testing.T) {
	a := amd64(t)
	ovmfCheck(t, a)
	img := loginSector(t)
	shot := filepath.Join(t.TempDir(), "screen.png")
	res, err := Boot(context.Background(), Options{
		Image: img, Arch: a, UEFI: true, Accel: "tcg", Memory: 512, Timeout: 2 * time.Minute,
		Expect: `BdsDxe: `, Screenshot: shot,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("OVMF under TCG reached %q in %s", res.Matched, res.Elapsed)
	checkPNG(t, shot)
	noQemuLeft(t, img)
}

// lateScreenSector prints "debian login: \n" on COM1, waits about three
// seconds (54 timer ticks), then fills the VGA text screen with white
// blocks: a guest whose screen is drawn after its login prompt.
//
//	xor ax,ax; mov ds,ax; mov dx,0x3f8; mov si,0x7c2c
//	l: lodsb; test al,al; jz d; out dx,al; jmp l
//	d: sti; cld; mov cx,54
//	w: hlt; loop w
//	mov ax,0xb800; mov es,ax; xor di,di; mov ax,0x7fdb; mov cx,2000; rep stosw
//	h: hlt; jmp h
func lateScreenSector(t *testing.T) string {
	return bootSector(t, "31C0 8ED8 BAF803 BE2C7C AC 84C0 7403 EE EBF8 FB FC B93600 F4 E2FD B800B8 8EC0 31FF B8DB7F B9D007 F3AB F4 EBFD",
		"debian login: \n\x00")
}

// lit is the share of an image's pixels that are not black.
func lit(t *testing.T, path string) float64 {
	t.Helper()
	img := readPNG(t, path)
	b := img.Bounds()
	n, on := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			n++
			if r, g, bl, _ := img.At(x, y).RGBA(); r|g|bl > 0x1000 {
				on++
			}
		}
	}
	return float64(on) / float64(n)
}

// With ScreenshotAfter the picture shows what the guest drew after the
// login prompt; without it, the screen as it was at the prompt.
func TestBootScreenshotAfter(t *testing.T) {
	a := amd64(t)
	img := lateScreenSector(t)
	dir := t.TempDir()
	now, later := filepath.Join(dir, "now.png"), filepath.Join(dir, "later.png")
	var l logger
	start := time.Now()
	res, err := Boot(context.Background(), Options{
		Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: time.Minute,
		Screenshot: later, ScreenshotAfter: 8 * time.Second, Log: l.log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < res.Elapsed+8*time.Second {
		t.Errorf("returned %s after the start, the login prompt came after %s: the 8s wait was cut short", took, res.Elapsed)
	}
	if !strings.Contains(l.text(), "the screenshot in 8s") {
		t.Errorf("log does not announce the wait:\n%s", l.text())
	}
	checkPNG(t, later)
	if f := lit(t, later); f < 0.9 {
		t.Errorf("the delayed screenshot is %.0f%% lit, want the white screen drawn after the prompt", 100*f)
	}
	noQemuLeft(t, img)

	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: time.Minute, Screenshot: now}); err != nil {
		t.Fatal(err)
	}
	if f := lit(t, now); f > 0.5 {
		t.Errorf("the screenshot at the prompt is %.0f%% lit: the screen was drawn before it, so the test proves nothing", 100*f)
	}
	noQemuLeft(t, img)
}

// A delay after a Run command: the command's result and the picture both
// come back, and the timeout does not cut the wait short.
func TestBootScreenshotAfterRun(t *testing.T) {
	a := amd64(t)
	img := shellSector(t)
	shot := filepath.Join(t.TempDir(), "screen.png")
	res, err := Boot(context.Background(), Options{
		Image: img, Arch: a, Accel: "tcg", Memory: 128, Timeout: 30 * time.Second,
		Run: "uname -a", Login: "root", Password: "secret",
		Screenshot: shot, ScreenshotAfter: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.RunOutput != "hello from the guest" || res.RunStatus != 3 {
		t.Errorf("got output %q, status %d", res.RunOutput, res.RunStatus)
	}
	checkPNG(t, shot)
	noQemuLeft(t, img)
}

func TestBootArm64UEFIISO(t *testing.T) {
	needQemu(t, "qemu-system-aarch64")
	a := lookup(t, "arm64")
	ovmfCheck(t, a)
	img := fakeISO(t)
	shot := filepath.Join(t.TempDir(), "screen.png")
	res, err := Boot(context.Background(), Options{
		Image: img, Arch: a, UEFI: true, Memory: 1024, Timeout: 3 * time.Minute,
		// The CD-ROM must be found on virtio-scsi for OVMF to name it.
		Expect: `BdsDxe: .*CD-ROM`, Screenshot: shot,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accel != "tcg" {
		t.Errorf("arm64 on this host ran with %s", res.Accel)
	}
	t.Logf("AAVMF under TCG reached %q in %s", res.Matched, res.Elapsed)
	checkPNG(t, shot)
	noQemuLeft(t, img)
}

func TestBootRefusals(t *testing.T) {
	a := lookup(t, "arm64")
	img := fakeISO(t)
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a}); err == nil || !strings.Contains(err.Error(), "UEFI") {
		t.Errorf("arm64 BIOS boot: got %v", err)
	}
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, UEFI: true, Accel: "kvm"}); err == nil || !strings.Contains(err.Error(), "KVM") {
		t.Errorf("arm64 with KVM on this host: got %v", err)
	}
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: "fast"}); err == nil {
		t.Error("unknown accelerator accepted")
	}
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, UEFI: true, ScreenshotAfter: time.Minute}); err == nil || !strings.Contains(err.Error(), "without a screenshot file") {
		t.Errorf("a screenshot delay without a file: got %v", err)
	}
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, UEFI: true, Screenshot: "x.png", ScreenshotAfter: -time.Second}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("a negative screenshot delay: got %v", err)
	}
	if _, err := Boot(context.Background(), Options{Image: img, Arch: lookup(t, "riscv64")}); err == nil {
		t.Error("riscv64 boot accepted")
	}
	fw := fakeFirmwareArch(t.TempDir())
	if _, err := Boot(context.Background(), Options{Image: img, Arch: fw, UEFI: true, Accel: "tcg"}); err == nil || !strings.Contains(err.Error(), "ovmf-fake") {
		t.Errorf("missing firmware: got %v", err)
	}
	defer func(f func(string) (string, error)) { lookPath = f }(lookPath)
	lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	if _, err := Boot(context.Background(), Options{Image: img, Arch: a, UEFI: true}); err == nil || !strings.Contains(err.Error(), "qemu-system-aarch64 (package qemu-system-arm)\ninstall with: apt-get install qemu-system-arm") {
		t.Errorf("missing qemu: got %v", err)
	}
}

// The KVM tests behave differently where KVM works; each asserts what must
// hold either way.

func needKVM(t *testing.T, a arch.Arch) {
	t.Helper()
	if err := kvmUsable(a); err != nil {
		t.Skip(err)
	}
}

// A boot sector runs even under the nested KVM that fails on real boot
// loaders.
func TestBootKVMExplicit(t *testing.T) {
	a := amd64(t)
	needKVM(t, a)
	defer resetVerdict()
	img := loginSector(t)
	res, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: "kvm", Memory: 128, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accel != "kvm" {
		t.Errorf("accel %s", res.Accel)
	}
	noQemuLeft(t, img)
}

// Where KVM breaks on firmware, explicit kvm must fail fast and say so,
// not wait for the timeout.
func TestBootKVMFailsFast(t *testing.T) {
	a := amd64(t)
	needKVM(t, a)
	ovmfCheck(t, a)
	defer resetVerdict()
	img := loginSector(t)
	start := time.Now()
	res, err := Boot(context.Background(), Options{Image: img, Arch: a, UEFI: true, Accel: "kvm", Memory: 512, Timeout: 2 * time.Minute, Expect: `BdsDxe: `})
	took := time.Since(start)
	if err == nil {
		t.Logf("KVM works here: OVMF reached %q in %s", res.Matched, res.Elapsed)
		return
	}
	if !strings.Contains(err.Error(), "KVM") || took > time.Minute {
		t.Errorf("after %s: %v", took, err)
	}
	t.Logf("explicit KVM failed in %s: %.200s", took, err)
	noQemuLeft(t, img)
}

// auto falls back to TCG where KVM breaks, remembers that, and does not
// try KVM on the next boot.
func TestBootAutoFallback(t *testing.T) {
	a := amd64(t)
	needKVM(t, a)
	ovmfCheck(t, a)
	resetVerdict()
	defer resetVerdict()
	img := loginSector(t)
	o := Options{Image: img, Arch: a, UEFI: true, Memory: 512, Timeout: 2 * time.Minute, Expect: `BdsDxe: `}
	var l logger
	o.Log = l.log(t)
	res, err := Boot(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	noQemuLeft(t, img)
	if res.Accel == "kvm" {
		t.Skip("KVM works here; no fallback to test")
	}
	if !strings.Contains(l.text(), "KVM is not usable here") {
		t.Errorf("no fallback message in the log:\n%s", l.text())
	}
	if known, ok, _ := verdict(); !known || ok {
		t.Errorf("verdict not remembered: known %v ok %v", known, ok)
	}
	var l2 logger
	o.Log = l2.log(t)
	res, err = Boot(context.Background(), o)
	if err != nil || res.Accel != "tcg" {
		t.Fatalf("second boot: %+v, %v", res, err)
	}
	if strings.Contains(l2.text(), "restarting") || !strings.Contains(l2.text(), "KVM failed earlier") {
		t.Errorf("second boot tried KVM again:\n%s", l2.text())
	}
	noQemuLeft(t, img)
}

// A KVM guest that stays silent is given up after the probe window; when
// TCG fails the same way, KVM is not blamed.
func TestBootAutoSilent(t *testing.T) {
	a := amd64(t)
	needKVM(t, a)
	resetVerdict()
	defer resetVerdict()
	defer func(d time.Duration) { kvmProbeWait = d }(kvmProbeWait)
	kvmProbeWait = 2 * time.Second
	img := silentSector(t)
	var l logger
	_, err := Boot(context.Background(), Options{Image: img, Arch: a, Memory: 128, Timeout: 4 * time.Second, Log: l.log(t)})
	if err == nil || !strings.Contains(err.Error(), "(no console output)") {
		t.Errorf("got %v, want a timeout with no console output", err)
	}
	if !strings.Contains(l.text(), "(no console output in 2s); restarting with TCG") {
		t.Errorf("log:\n%s", l.text())
	}
	if known, _, _ := verdict(); known {
		t.Error("KVM was blamed for a guest that fails under TCG too")
	}
	noQemuLeft(t, img)
}

// qemu that gives up at once (here: a qcow2 header it cannot use) is
// reported with what it said, and under auto KVM is not blamed for it.
func TestBootQemuFails(t *testing.T) {
	a := amd64(t)
	resetVerdict()
	defer resetVerdict()
	img := filepath.Join(t.TempDir(), "broken.qcow2")
	if err := os.WriteFile(img, append([]byte("QFI\xfb\x00\x00\x00\x63"), make([]byte, 1000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, accel := range []string{"tcg", "auto"} {
		var l logger
		start := time.Now()
		_, err := Boot(context.Background(), Options{Image: img, Arch: a, Accel: accel, Memory: 128, Timeout: time.Minute, Log: l.log(t)})
		if err == nil || !strings.Contains(err.Error(), "qemu exited (exit status 1)") || !strings.Contains(err.Error(), "qemu said:\n    qemu-system-x86_64: ") {
			t.Errorf("%s: got %v", accel, err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%s: took %s to notice", accel, took)
		}
		if known, _, _ := verdict(); known {
			t.Errorf("%s: KVM was blamed for a broken image", accel)
		}
		noQemuLeft(t, img)
	}
}
