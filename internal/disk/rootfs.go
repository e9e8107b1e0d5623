package disk

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"vmdeb/internal/imgroot"
)

// PrepareRootfs writes what makes rootfs a system booting from the disk of
// layout l: /etc/fstab by UUID, the host name, DHCP on the first Ethernet
// interface, a login on the serial console, the first-boot root grow when
// asked and the kernel command line in /etc/default/grub when the image has
// GRUB's package. Units are enabled by their links, as systemctl would make
// them, so nothing runs inside rootfs.
//
// Files are replaced (a new file renamed over the old), never written in
// place, so rootfs may be a tree of hard links to another one.
func PrepareRootfs(rootfs string, l Layout, o Options) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	if _, err := prepareRootfs(rootfs, l, o); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

// prepareRootfs is PrepareRootfs with normalized options, returning notes
// for the build log: what the image will lack.
func prepareRootfs(rootfs string, l Layout, o Options) (notes []string, err error) {
	r := root(rootfs)
	if err := r.write("etc/fstab", RenderFstab(l), 0o644); err != nil {
		return nil, err
	}
	// Mount points of the file systems below the root.
	for _, p := range l.Parts {
		if p.Mount != "" && p.Mount != "/" {
			if err := r.mkdir(p.Mount); err != nil {
				return nil, err
			}
		}
	}
	if o.Hostname != "" {
		if err := r.setHostname(o.Hostname); err != nil {
			return nil, err
		}
	}
	switch o.Network {
	case Networkd:
		n, err := r.networkd()
		if err != nil {
			return nil, err
		}
		notes = append(notes, n...)
	case Ifupdown:
		if err := r.ifupdown(); err != nil {
			return nil, err
		}
	}
	n, err := r.serialGetty(o.Arch.Console)
	if err != nil {
		return nil, err
	}
	notes = append(notes, n...)
	if o.GrowRoot {
		if err := r.growRoot(); err != nil {
			return nil, err
		}
	}
	if err := r.defaultGrub(l, o); err != nil {
		return nil, err
	}
	if o.SecureBoot {
		if err := r.forceExtraRemovable(); err != nil {
			return nil, err
		}
	}
	return notes, nil
}

// debconfDB is the image's debconf database of answers.
const debconfDB = "var/cache/debconf/config.dat"

// forceExtraRemovable answers debconf's grub2/force_efi_extra_removable
// with true in the image's database, as the installer's preseeding can:
// the ESP carries shim and GRUB under the removable-media path too, and
// grub-efi-ARCH's postinst refreshes that copy on upgrades only when the
// answer is true. Without the question (no grub-efi-ARCH in the image)
// nothing changes. The file is edited as debconf-set-selections would,
// without running anything in the image.
func (r root) forceExtraRemovable() error {
	cur, err := r.read(debconfDB)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	out, ok := setDebconfAnswer(cur, "grub2/force_efi_extra_removable", "true")
	if !ok {
		return nil
	}
	return r.write(debconfDB, out, 0o644)
}

// setDebconfAnswer sets the value of question name in a debconf
// config.dat (stanzas of Field: value lines, blank-line separated) and
// marks it seen, as debconf-set-selections does. ok is false when the
// database has no such question.
func setDebconfAnswer(db, name, value string) (string, bool) {
	stanzas := strings.Split(db, "\n\n")
	for i, st := range stanzas {
		lines := strings.Split(st, "\n")
		if !slices.Contains(lines, "Name: "+name) {
			continue
		}
		var out []string
		valueSet, flagsSet := false, false
		for _, l := range lines {
			switch {
			case strings.HasPrefix(l, "Value:"):
				l, valueSet = "Value: "+value, true
			case strings.HasPrefix(l, "Flags:"):
				flags := strings.Fields(strings.TrimPrefix(l, "Flags:"))
				if !slices.Contains(flags, "seen") {
					flags = append(flags, "seen")
				}
				l, flagsSet = "Flags: "+strings.Join(flags, " "), true
			}
			out = append(out, l)
		}
		// In debconf's order: Name, Template, Value, Owners, Flags.
		if !valueSet {
			out = insertAfter(out, "Template:", "Value: "+value)
		}
		if !flagsSet {
			out = insertAfter(out, "Owners:", "Flags: seen")
		}
		stanzas[i] = strings.Join(out, "\n")
		return strings.Join(stanzas, "\n\n"), true
	}
	return db, false
}

// insertAfter puts line after the first line starting with prefix (at the
// end when there is none).
func insertAfter(lines []string, prefix, line string) []string {
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return slices.Insert(lines, i+1, line)
		}
	}
	return append(lines, line)
}

// root is a root file system on the host; its methods take paths relative
// to it and never follow a link out of it: links are resolved inside the
// image (/lib -> usr/lib, or an absolute link, never leads to the host's
// files; see imgroot).
type root string

func (r root) open() (*imgroot.Root, error) { return imgroot.Open(string(r)) }

// exists reports whether the image has rel, following its links inside the
// image (an absolute link target is inside the image, not on the host).
func (r root) exists(rel string) bool {
	img, err := r.open()
	if err != nil {
		return false
	}
	defer img.Close()
	_, err = img.Lstat(rel)
	return err == nil
}

// write replaces rel with data: a new file renamed over the old one (a
// link is replaced, not written through), with mode whatever the umask.
func (r root) write(rel, data string, mode os.FileMode) error {
	img, err := r.open()
	if err != nil {
		return err
	}
	defer img.Close()
	if err := img.MkdirAll(path.Dir(path.Clean("/"+rel)), 0o755); err != nil {
		return err
	}
	return img.WriteFile(rel, []byte(data), mode)
}

func (r root) read(rel string) (string, error) {
	img, err := r.open()
	if err != nil {
		return "", err
	}
	defer img.Close()
	b, err := img.ReadFile(rel)
	return string(b), err
}

func (r root) mkdir(rel string) error {
	img, err := r.open()
	if err != nil {
		return err
	}
	defer img.Close()
	return img.MkdirAll(rel, 0o755)
}

// symlink makes rel a link to target, replacing what was there.
func (r root) symlink(target, rel string) error {
	img, err := r.open()
	if err != nil {
		return err
	}
	defer img.Close()
	if err := img.MkdirAll(path.Dir(path.Clean("/"+rel)), 0o755); err != nil {
		return err
	}
	if err := img.Remove(rel); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return img.Symlink(target, rel)
}

// setHostname writes /etc/hostname and the 127.0.1.1 line of /etc/hosts,
// as the Debian installer does.
func (r root) setHostname(name string) error {
	if strings.ContainsAny(name, " \t\n/") {
		return fmt.Errorf("host name %q is not valid", name)
	}
	if err := r.write("etc/hostname", name+"\n", 0o644); err != nil {
		return err
	}
	hosts, err := r.read("etc/hosts")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if hosts == "" {
		hosts = "127.0.0.1\tlocalhost\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	}
	return r.write("etc/hosts", setHostsLine(hosts, name), 0o644)
}

// setHostsLine sets name on the 127.0.1.1 line, adding the line after
// localhost's when there is none.
func setHostsLine(hosts, name string) string {
	line := "127.0.1.1\t" + name
	lines := strings.Split(strings.TrimSuffix(hosts, "\n"), "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.1.1" {
			lines[i] = line
			return strings.Join(lines, "\n") + "\n"
		}
	}
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.0.1" {
			lines = append(lines[:i+1], append([]string{line}, lines[i+1:]...)...)
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append([]string{line}, lines...), "\n") + "\n"
}

// networkdFile matches every Ethernet name the kernel or udev gives (a VM
// has one interface); networkd runs DHCP on it.
const networkdFile = `# Written by vmdeb: DHCP on the Ethernet interface.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`

func (r root) networkd() (notes []string, err error) {
	if _, err := r.findUnit("systemd-networkd.service"); err != nil {
		return nil, fmt.Errorf("network networkd: the image has no systemd-networkd (install systemd, or choose ifupdown or none): %w", err)
	}
	if err := r.write("etc/systemd/network/90-vmdeb-dhcp.network", networkdFile, 0o644); err != nil {
		return nil, err
	}
	if err := r.enable("systemd-networkd.service"); err != nil {
		return nil, err
	}
	// networkd hands DNS servers to resolved only; without it the image
	// resolves no names.
	if _, err := r.findUnit("systemd-resolved.service"); err == nil {
		return nil, r.enable("systemd-resolved.service")
	}
	return []string{"the image has no systemd-resolved: networkd's DNS servers will not reach /etc/resolv.conf (add systemd-resolved to the packages)"}, nil
}

// ifupdownFile brings up the first interface whose name starts with en or
// et (enp0s3, ens3, eth0) with DHCP, by an interface pattern of ifupdown.
// "auto", not "allow-hotplug": ifup maps a pattern to its logical
// interface only when it expands its lists itself (ifup -a at boot, after
// ifupdown-pre waited for udev), not for the physical name a hotplug
// event passes.
const ifupdownFile = `# Written by vmdeb: DHCP on the first Ethernet interface.
auto /e[nt]*/1=vmdeb-dhcp
iface vmdeb-dhcp inet dhcp
`

func (r root) ifupdown() error {
	if !r.exists("sbin/ifup") && !r.exists("usr/sbin/ifup") {
		return errors.New("network ifupdown: the image has no ifup (add ifupdown and a DHCP client such as isc-dhcp-client or dhcpcd-base to the packages)")
	}
	ifaces, err := r.read("etc/network/interfaces")
	if errors.Is(err, os.ErrNotExist) {
		ifaces = "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n"
		if err := r.write("etc/network/interfaces", ifaces, 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if !sourcesInterfacesD(ifaces) {
		if err := r.write("etc/network/interfaces", "source /etc/network/interfaces.d/*\n"+ifaces, 0o644); err != nil {
			return err
		}
	}
	return r.write("etc/network/interfaces.d/vmdeb-dhcp", ifupdownFile, 0o644)
}

func sourcesInterfacesD(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "source" || f[0] == "source-directory") && strings.HasPrefix(f[1], "/etc/network/interfaces.d") {
			return true
		}
	}
	return false
}

// serialGetty enables a login on the serial console. systemd's getty
// generator would start one for the last console= too; the link makes the
// login independent of the command line. A sysvinit image gets an inittab
// line instead.
func (r root) serialGetty(console string) (notes []string, err error) {
	if console == "" {
		return nil, nil
	}
	if _, err := r.findUnit("serial-getty@.service"); err == nil {
		return nil, r.enable("serial-getty@" + console + ".service")
	}
	inittab, err := r.read("etc/inittab")
	if errors.Is(err, os.ErrNotExist) {
		return []string{"the image has neither systemd's serial-getty@.service nor /etc/inittab: no login on " + console}, nil
	} else if err != nil {
		return nil, err
	}
	if strings.Contains(inittab, " "+console+" ") || strings.Contains(inittab, " "+console+"\n") {
		return nil, nil
	}
	line := fmt.Sprintf("V0:2345:respawn:/sbin/getty -L %s 115200 vt100\n", console)
	return nil, r.write("etc/inittab", strings.TrimSuffix(inittab, "\n")+"\n"+line, 0o644)
}

// growRootScript grows the root partition to the end of its disk and then
// the root file system, once: growpart (cloud-guest-utils) or sfdisk
// (fdisk) for the partition, systemd-growfs or resize2fs for the file
// system, whichever the image has.
const growRootScript = `#!/bin/sh
# Written by vmdeb: grow the root partition and file system to fill the
# disk, on the first boot. Run by vmdeb-growroot.service.
set -eu
dev=$(readlink -f "$(findmnt -n -o SOURCE /)")
name=${dev##*/}
sys=/sys/class/block/$name
part=$(cat "$sys/partition")
disk=/dev/$(basename "$(readlink -f "$sys/..")")
if command -v growpart >/dev/null 2>&1; then
	rc=0
	growpart "$disk" "$part" || rc=$?
	# 1: nothing to grow
	[ "$rc" -le 1 ]
else
	echo ',+' | sfdisk --force --no-reread --no-tell-kernel -N "$part" "$disk"
	partx --update --nr "$part" "$disk"
fi
if [ -x /usr/lib/systemd/systemd-growfs ]; then
	/usr/lib/systemd/systemd-growfs /
else
	resize2fs "$dev"
fi
mkdir -p /var/lib/vmdeb
touch /var/lib/vmdeb/growroot.done
`

const growRootUnit = `# Written by vmdeb.
[Unit]
Description=Grow the root partition and file system to fill the disk
ConditionPathExists=!/var/lib/vmdeb/growroot.done
After=local-fs.target
Before=getty.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmdeb-growroot

[Install]
WantedBy=multi-user.target
`

func (r root) growRoot() error {
	has := func(names ...string) bool {
		for _, n := range names {
			for _, d := range []string{"usr/sbin/", "usr/bin/", "sbin/", "bin/", "usr/lib/systemd/"} {
				if r.exists(d + n) {
					return true
				}
			}
		}
		return false
	}
	var lack []string
	if !has("growpart", "sfdisk") {
		lack = append(lack, "growpart or sfdisk (add cloud-guest-utils or fdisk to the packages)")
	}
	if !has("systemd-growfs", "resize2fs") {
		lack = append(lack, "systemd-growfs or resize2fs (add e2fsprogs to the packages)")
	}
	if !has("findmnt") || !has("partx") {
		lack = append(lack, "findmnt and partx (util-linux)")
	}
	if _, err := r.findUnit("multi-user.target"); err != nil {
		lack = append(lack, "systemd")
	}
	if len(lack) > 0 {
		return fmt.Errorf("grow-root: the image lacks %s", strings.Join(lack, "; "))
	}
	if err := r.write("usr/local/sbin/vmdeb-growroot", growRootScript, 0o755); err != nil {
		return err
	}
	if err := r.write("etc/systemd/system/vmdeb-growroot.service", growRootUnit, 0o644); err != nil {
		return err
	}
	return r.enable("vmdeb-growroot.service")
}

// unitDirs are where systemd reads units, in its order of precedence.
var unitDirs = []string{"etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"}

// findUnit returns the image path (/usr/lib/systemd/system/x.service) of
// unit, or of its template for an instance (getty@tty1.service).
func (r root) findUnit(unit string) (string, error) {
	name := templateOf(unit)
	for _, d := range unitDirs {
		rel := d + "/" + name
		if r.exists(rel) {
			return "/" + rel, nil
		}
	}
	return "", fmt.Errorf("no unit %s in %s", name, strings.Join(unitDirs, ", "))
}

// templateOf is the template of an instance name, or name itself.
func templateOf(unit string) string {
	at := strings.Index(unit, "@")
	dot := strings.LastIndex(unit, ".")
	if at < 0 || dot < at || at+1 == dot {
		return unit
	}
	return unit[:at+1] + unit[dot:]
}

// enable does what systemctl enable does with the unit's [Install]
// section: links in the .wants and .requires directories of its targets,
// its aliases, and the units named by Also=.
func (r root) enable(unit string) error {
	return r.enableSeen(unit, map[string]bool{})
}

func (r root) enableSeen(unit string, seen map[string]bool) error {
	if seen[unit] {
		return nil
	}
	seen[unit] = true
	file, err := r.findUnit(unit)
	if err != nil {
		return fmt.Errorf("enabling %s: %w", unit, err)
	}
	text, err := r.read(file)
	if err != nil {
		return err
	}
	inst := parseInstall(text)
	link := func(dir, name string) error {
		rel := "etc/systemd/system/" + name
		if dir != "" {
			rel = "etc/systemd/system/" + dir + "/" + name
		}
		if "/"+rel == file {
			return nil // the unit itself lives there
		}
		return r.symlink(file, rel)
	}
	for _, t := range inst["WantedBy"] {
		if err := link(t+".wants", unit); err != nil {
			return err
		}
	}
	for _, t := range inst["RequiredBy"] {
		if err := link(t+".requires", unit); err != nil {
			return err
		}
	}
	for _, a := range inst["Alias"] {
		if err := link("", a); err != nil {
			return err
		}
	}
	for _, also := range inst["Also"] {
		if err := r.enableSeen(also, seen); err != nil {
			return err
		}
	}
	return nil
}

// parseInstall reads a unit's [Install] section: each key's
// space-separated values, in order.
func parseInstall(text string) map[string][]string {
	out := map[string][]string{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		if l[0] == '[' {
			in = l == "[Install]"
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		out[k] = append(out[k], strings.Fields(v)...)
	}
	return out
}

// defaultGrub puts the consoles and the config's parameters into
// /etc/default/grub when the image has GRUB's package, so that its own
// update-grub writes the same command line as vmdeb's menu.
func (r root) defaultGrub(l Layout, o Options) error {
	cur, err := r.read("etc/default/grub")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	cmdline := KernelCmdline(l, o)[2:] // root= and ro are update-grub's own
	set := map[string]string{"GRUB_CMDLINE_LINUX": strings.Join(cmdline, " ")}
	if strings.HasPrefix(o.Arch.Console, "ttyS") {
		set["GRUB_TERMINAL"] = "console serial"
		set["GRUB_SERIAL_COMMAND"] = "serial --unit=0 --speed=115200"
	}
	return r.write("etc/default/grub", setShellVars(cur, set), 0o644)
}

var assignRE = regexp.MustCompile(`^\s*#?\s*([A-Z_][A-Z0-9_]*)=`)

// setShellVars sets VAR="value" lines in a shell fragment, replacing the
// first assignment (or commented-out assignment) of each and appending the
// others.
func setShellVars(text string, vars map[string]string) string {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	done := map[string]bool{}
	for i, l := range lines {
		m := assignRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if v, ok := vars[m[1]]; ok && !done[m[1]] {
			lines[i] = fmt.Sprintf("%s=%q", m[1], v)
			done[m[1]] = true
		}
	}
	for _, k := range sortedKeys(vars) {
		if !done[k] {
			lines = append(lines, fmt.Sprintf("%s=%q", k, vars[k]))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func sortedKeys(m map[string]string) []string {
	k := slices.Collect(maps.Keys(m))
	slices.Sort(k)
	return k
}
