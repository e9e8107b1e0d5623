package vmdebootstrap

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"vmdeb/internal/arch"
)

// Files a run writes into its own directory.
const (
	ConfigName = "vmdebootstrap.yaml"
	HookName   = "vmdebootstrap-hook.sh"
	// ImageHookName is the image hook's file beside the config.
	ImageHookName = "vmdebootstrap-image-hook.sh"
	BootStage     = "boot" // --squash: the image's /boot files, copied by the hook
)

// Build is what a run makes from the settings: the vmdeb config, and the
// hook that does around --customize what vmdebootstrap did (HookName in
// the same directory; "" when nothing needs it).
type Build struct {
	YAML, Hook string
	// ImageHook is the disk's image hook (ImageHookName): with --image
	// alone the --customize script runs on the image (disk.Hook).
	ImageHook string
}

// Config makes the vmdeb config (for a file in dir) and its hook. cwd is
// the caller's working directory: relative paths are taken from it, and
// the --customize script runs in it, with environ, the caller's
// environment, as vmdebootstrap's did.
func (s *Settings) Config(cwd, dir string, environ []string) (*Build, error) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	a := s.Arch()
	m := yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v any) {
		var n yaml.Node
		n.Encode(v)
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &n)
	}
	add("name", s.name())
	add("suite", s.Str("distribution"))
	add("architecture", a)
	if v := s.Str("mirror"); v != "" {
		add("mirror", v)
	}
	// filesystem.configure_apt: only with both.
	if s.Bool("configure-apt") && s.Str("apt-mirror") != "" {
		add("apt-mirror", s.Str("apt-mirror"))
	}
	if v := s.Str("foreign"); v != "" {
		add("binfmt-handler", abs(v))
	}
	opts, include, err := s.debootstrap()
	if err != nil {
		return nil, err
	}
	// Without variant= debootstrap installed its default set (required
	// and important), which has an init.
	if _, ok := opts["variant"]; !ok {
		opts["variant"] = "important"
	}
	if k, ok := opts["keyring"].(string); ok {
		opts["keyring"] = abs(k)
	}
	for _, k := range sortedKeys(opts) {
		add(k, opts[k])
	}
	kernel := s.kernel()
	if kernel == "" {
		if x, err := arch.Lookup(a); err == nil {
			kernel = x.Kernel
		}
	}
	if kernel != "" {
		add("kernel", kernel)
	}
	// base.base_packages: acpid unless --no-acpid or --foreign, sudo
	// with --sudo; all through debootstrap's --include.
	pk := splitPackages(append(s.List("package"), include...))
	if s.Str("foreign") == "" && !s.Bool("no-acpid") && !contains(pk, "acpid") {
		pk = append(pk, "acpid")
	}
	if s.Bool("sudo") && !contains(pk, "sudo") {
		pk = append(pk, "sudo")
	}
	if len(pk) > 0 {
		add("packages", pk)
	}
	if l := s.List("custom-package"); len(l) > 0 {
		var abss []string
		for _, p := range l {
			abss = append(abss, abs(p))
		}
		add("custom-packages", abss)
	}
	users, emptyPW := s.users()
	if len(users) > 0 {
		add("users", users)
	}
	switch {
	case s.Str("root-password") != "":
		if s.Bool("lock-root-password") {
			s.note("--lock-root-password ignored: --root-password wins, as in vmdebootstrap")
		}
		add("root", map[string]any{"password": s.Str("root-password")})
	case s.Bool("lock-root-password"):
		add("root", map[string]any{"lock": true})
	default:
		s.note("root's password is locked (vmdebootstrap gave root an empty password); --root-password sets one")
		add("root", map[string]any{"lock": true})
	}
	add("hostname", s.Str("hostname"))
	hook, imageHook, err := s.hook(cwd, dir, environ, emptyPW)
	if err != nil {
		return nil, err
	}
	if hook != "" {
		add("customise", filepath.Join(dir, HookName))
	}
	var outs []map[string]any
	if img := s.Str("image"); img != "" {
		d := s.disk(abs(img))
		if imageHook != "" {
			d["image-hook"] = filepath.Join(dir, ImageHookName)
		}
		outs = append(outs, d)
	}
	if t := s.Str("tarball"); t != "" {
		outs = append(outs, map[string]any{"type": "tarball", "path": abs(t)})
	}
	if q := s.Str("squash"); q != "" {
		outs = append(outs, map[string]any{"type": "squashfs", "path": abs(q)})
	}
	add("outputs", outs)
	s.otherNotes()
	out, err := yaml.Marshal(&m)
	return &Build{YAML: "# made by vmdeb vmdebootstrap\n" + string(out), Hook: hook, ImageHook: imageHook}, err
}

// disk is the --image output (_image_preparations, partition_image).
func (s *Settings) disk(path string) map[string]any {
	size, _ := s.Bytes("size")
	d := map[string]any{"type": "disk", "path": path, "size": size / 512 * 512,
		"filesystem": s.Str("roottype"), "partition-table": map[string]string{"msdos": "mbr", "gpt": "gpt"}[s.Str("part-type")],
		"format": "raw", "bootloader": s.bootloader(), "network": s.networking()}
	if s.Bool("convert-qcow2") {
		d["format"] = "qcow2"
	}
	if b, _ := s.Bytes("bootsize"); b > 0 {
		d["boot-size"] = b
		if !s.Given("boottype") {
			s.note("/boot is %s (vmdebootstrap's default --boottype was ext2)", vmdebBootFS(s.Str("roottype")))
		} else if fs := bootFS(s.Str("boottype")); fs != "" {
			d["boot-filesystem"] = fs
		}
		// partition_image: the first partition starts at --bootoffset in
		// whole MiB, at least 1.
		if off, _ := s.Bytes("bootoffset"); off > 1<<20 {
			d["partition-offset"] = off / (1 << 20) * (1 << 20)
			if off%(1<<20) != 0 {
				s.note("--bootoffset %s: the first partition starts at %d MiB, as vmdebootstrap rounded it", s.Str("bootoffset"), off>>20)
			}
		}
	}
	if sw, _ := s.Bytes("swap"); sw > 0 {
		// base.check_swap_size: at least 256 MiB.
		d["swap-size"] = max(sw, 256<<20)
	}
	if e, _ := s.Bytes("esp-size"); s.Bool("use-uefi") && s.Given("esp-size") {
		d["esp-size"] = e
	}
	return d
}

// otherNotes are the lines for settings vmdeb accepts and does otherwise.
func (s *Settings) otherNotes() {
	for _, n := range []struct{ name, text string }{
		{"sparse", "--sparse: vmdeb's disk images are always sparse"},
		{"serial-console", "--serial-console: vmdeb always puts a console and a login on the serial port"},
		{"serial-console-command", "--serial-console-command: ignored (vmdebootstrap used it for wheezy's inittab only)"},
		{"mbr", "--mbr: ignored; GRUB writes its own boot code (install-mbr was for extlinux)"},
		{"output", "--output: ignored (vmdebootstrap wrote nothing to it)"},
		{"log-level", "--log-level: the build log always has every command's output"},
		{"log-max", "--log-max, --log-keep: vmdeb writes one build log and does not rotate it"},
		{"log-keep", "--log-max, --log-keep: vmdeb writes one build log and does not rotate it"},
		{"log-mode", "--log-mode: the build log keeps vmdeb's permissions"},
		{"dump-memory-profile", "--dump-memory-profile, --memory-dump-interval: no memory profiling in vmdeb"},
		{"memory-dump-interval", "--dump-memory-profile, --memory-dump-interval: no memory profiling in vmdeb"},
		{"verbose", "--verbose: vmdeb says each step anyway; the build log has the commands' output"},
	} {
		if s.Given(n.name) {
			s.note("%s", n.text)
		}
	}
	if s.Given("bootoffset") {
		if b, _ := s.Bytes("bootsize"); b == 0 {
			s.note("--bootoffset: ignored without --bootsize, as vmdebootstrap did")
		}
	}
	if s.Bool("use-uefi") && s.Str("image") == "" {
		s.note("--use-uefi: no disk image, so no EFI system partition and no GRUB package (vmdebootstrap installed grub-efi)")
	} else if s.Bool("grub") && s.Str("image") == "" {
		s.note("--grub: no disk image, so no GRUB package (vmdebootstrap installed grub-pc)")
	}
	if l := s.Str("log"); l == "stderr" || l == "syslog" || l == "none" {
		s.note("--log %s: the build log is vmdeb's own file; progress goes to the standard error output", l)
	}
	if s.Bool("enable-dhcp") && s.networking() == "networkd" {
		s.note("--enable-dhcp: systemd-networkd does DHCP on every en* interface (vmdebootstrap's default for jessie and later; --no-systemd-networkd for ifupdown)")
	}
	if s.Bool("dry-run") {
		s.note("--dry-run: prints the vmdeb config instead of vmdebootstrap's package list")
	}
}

// shellQuote quotes a word for sh.
func shellQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// hook is the shell scripts vmdeb runs as its customisation hook and as
// the disk's image hook: they do what bin/vmdebootstrap's start_ops did
// from create_users to list_installed_pkgs that vmdeb's config cannot
// say. "" when nothing.
func (s *Settings) hook(cwd, dir string, environ []string, emptyPW []string) (string, string, error) {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	image, squash := s.Str("image"), s.Str("squash")
	// base.create_users: NAME alone has an empty password.
	for _, u := range emptyPW {
		w("chroot \"$root\" passwd -d %s >/dev/null", shellQuote(u))
	}
	// start_ops' networking: for a disk the config's network key says it.
	if image == "" {
		switch s.networking() {
		case "networkd":
			w(`mkdir -p "$root/etc/systemd/network"`)
			w(`printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/99-dhcp.network"`)
			w(`chroot "$root" systemctl enable systemd-networkd`)
		default:
			if !s.Bool("systemd-networkd") {
				w(`mkdir -p "$root/etc/udev/rules.d"`)
				w(`ln -sf /dev/null "$root/etc/udev/rules.d/80-net-setup-link.rules"`)
			}
			w(`mkdir -p "$root/etc/network/interfaces.d"`)
			w(`printf 'source-directory /etc/network/interfaces.d\n' >"$root/etc/network/interfaces"`)
			if s.Bool("enable-dhcp") {
				w(`printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$root/etc/network/interfaces.d/setup"`)
			} else {
				w(`printf 'auto lo\niface lo inet loopback\n' >"$root/etc/network/interfaces.d/setup"`)
			}
		}
	}
	// With --image alone, the script and what followed it run on the
	// image, as vmdebootstrap ran them on the mounted image: vmdeb's
	// image hook, given the image's tree and the partitioned image file.
	onImage := image != "" && squash == "" && s.Str("tarball") == ""
	pre := b.String()
	if onImage {
		b.Reset()
	}
	if s.Str("customize") != "" {
		script, err := s.script(cwd)
		if err != nil {
			return "", "", err
		}
		// base.customize: SCRIPT ROOTDIR IMAGE; IMAGE is empty for a
		// tarball or a squashfs.
		if onImage {
			w(`image=$2`)
		} else {
			w("image=%s", shellQuote(image))
		}
		w(`%s "$root" "$image" || { rc=$?; printf '%%s failed (exit status %%s)\n' %s "$rc" >&2; exit "$rc"; }`, shellQuote(script), shellQuote(script))
	}
	if (pre != "" || b.Len() > 0) && s.Bool("update-initramfs") {
		// filesystem.update_initramfs, after the script: what it added
		// to initramfs-tools' configuration reaches the initrd.
		w(`if [ -x "$root/usr/sbin/update-initramfs" ]; then chroot "$root" /usr/sbin/update-initramfs -u; fi`)
	}
	if s.Bool("pkglist") {
		// filesystem.list_installed_pkgs, byte for byte.
		w(`chroot "$root" dpkg-query -W "-f='\${Package}.deb\n'" >%s`, shellQuote(filepath.Join(cwd, "dpkg.list")))
	}
	if squash != "" {
		// filesystem.squash_rootfs copied /boot's files beside the
		// squashfs; Run puts them there after the build.
		stage := shellQuote(filepath.Join(dir, BootStage))
		w(`mkdir -p %s`, stage)
		w(`for f in "$root"/boot/*; do if [ -f "$f" ] && [ ! -L "$f" ]; then cp -p -- "$f" %s/; fi; done`, stage)
	}
	post := b.String()
	if onImage {
		general, err := s.hookScript(pre, cwd, environ)
		if err != nil {
			return "", "", err
		}
		img, err := s.hookScript(post, cwd, environ)
		return general, img, err
	}
	all, err := s.hookScript(post, cwd, environ)
	return all, "", err
}

// hookScript is a hook script with body, in the caller's directory and
// environment; "" for an empty body.
func (s *Settings) hookScript(body, cwd string, environ []string) (string, error) {
	if body == "" {
		return "", nil
	}
	var h strings.Builder
	h.WriteString("#!/bin/sh\n# made by vmdeb vmdebootstrap: what vmdebootstrap " + Version + " did around --customize\nset -e\nroot=$1\n")
	// The caller's environment, as vmdebootstrap's script had it; the
	// build's own variables stay.
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(k) || strings.HasPrefix(k, "VMDEB_") || strings.HasPrefix(k, "DEBCONF_") ||
			contains([]string{"DEBIAN_FRONTEND", "PWD", "OLDPWD", "SHLVL", "_"}, k) {
			continue
		}
		fmt.Fprintf(&h, "export %s=%s\n", k, shellQuote(v))
	}
	fmt.Fprintf(&h, "PATH=\"$PATH:/usr/sbin:/sbin\"\ncd %s\n", shellQuote(cwd))
	return h.String() + body, nil
}

// INI writes the settings as cliapp's --dump-config did.
func (s *Settings) INI() string {
	var b strings.Builder
	b.WriteString("[config]\n")
	for _, st := range settings {
		var v string
		switch st.kind {
		case kList:
			var l []string
			for _, x := range s.List(st.name) {
				if strings.Contains(x, ",") {
					x = `"` + x + `"`
				}
				l = append(l, x)
			}
			v = strings.Join(l, ", ")
		case kBool:
			v = map[bool]string{true: "True", false: "False"}[s.Bool(st.name)]
		case kSize:
			n, _ := s.Bytes(st.name)
			v = fmt.Sprint(n)
		default:
			v = s.Str(st.name)
		}
		fmt.Fprintf(&b, "%s = %s\n", st.name, v)
	}
	return b.String()
}
