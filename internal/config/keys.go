package config

import (
	"reflect"
	"strings"

	"vmdeb/internal/apt"
	"vmdeb/internal/arch"
	"vmdeb/internal/disk"
	"vmdeb/internal/live"
)

// The config format's reference, vmdeb.yaml(5), is made from this file:
// the keys from Spec's yaml tags (Keys), their types from the Go types,
// the valid values of the enumerated keys from the lists validation
// uses, and the defaults and descriptions from keyText, the one place
// they are written. A key without a text, or a text without a key, fails
// the package's tests.

// Key is one config key as vmdeb.yaml(5) documents it.
type Key struct {
	// Path is the key's place: "name", "live.title", "users[].name",
	// "outputs[].size".
	Path string
	// Type is what the key takes: "string", "boolean", "size", ...
	Type string
	// Default is the value a key not given has ("" when there is none);
	// Required says the key must be given.
	Default  string
	Required bool
	// Values are the valid values of an enumerated key (or of a list's
	// items), in the order validation's messages give them.
	Values []string
	// Text says what the key does.
	Text string
	// Disk marks an output key that applies to disk outputs only.
	Disk bool
}

// keyDoc is a key's hand-written part.
type keyDoc struct {
	def      string
	required bool
	disk     bool
	text     string
}

// keyText holds each key's default and description. Plain text: the man
// page generator escapes it.
var keyText = map[string]keyDoc{
	"include":                    {text: "Other config files this one is laid on: a path or a list of paths, relative to the file that names them. The included files are read in order, each on top of the one before, and this file on top of them all; a key given here replaces the included one (a mapping such as live: is merged key by key), and KEY+: appends to an included list instead of replacing it. An included file may include others; a cycle is an error."},
	"name":                       {required: true, text: "The image's name: lower-case letters, digits and . + _ - (starting with a letter or digit). It makes the output and log file names."},
	"suite":                      {required: true, text: "The Debian release: a codename or an alias (stable, testing, ...). Releases older than bullseye need a mirror that still has them."},
	"architecture":               {required: true, text: "The Debian architecture of the image. Which outputs each architecture can produce is in the project's docs/architectures.md; a foreign architecture builds through qemu-user."},
	"binfmt-handler":             {def: "the host's registered handler", text: "A static qemu-user binary copied into the image for the build of a foreign architecture."},
	"mirror":                     {def: "the Debian mirror in the host's apt sources", text: "The mirror used while building. A user and password in the URL (http://USER:PASS@HOST/debian) are taken out of it: they reach vmdeb's downloads, debootstrap and apt during the build, never the image, the log or the terminal."},
	"apt-mirror":                 {def: "mirror", text: "The mirror written into the finished image's apt sources."},
	"security-mirror":            {def: "the host's, else apt-mirror's .../debian-security", text: "The image's security archive (stable suites only)."},
	"apt-auth":                   {text: "An apt auth.conf file (machine HOST[/PATH] login USER password PASS; see apt_auth.conf(5)) with the mirrors' credentials, used during the build only. The host's /etc/apt/auth.conf(.d) is used with the host's mirror. The finished image gets none."},
	"components":                 {def: "[main]", text: "The archive components."},
	"variant":                    {def: string(Minbase), text: "The bootstrap variant, as debootstrap names it; important is debootstrap's default set (Priority required and important). minbase and buildd have no init: a bootable image on them needs one in packages (systemd-sysv), which vmdeb check points out."},
	"bootstrap":                  {def: string(Debootstrap), text: "The base system's backend: debootstrap, or native (vmdeb's own: it verifies InRelease against the keyring, shares a package cache between builds, and needs no debootstrap, apt or dpkg on the host)."},
	"keyring":                    {def: "debootstrap's", text: "The OpenPGP keyring that verifies the archive."},
	"cache":                      {def: "/var/cache/vmdeb/debs", text: "The package cache, shared by every build on the machine: the native bootstrapper's packages, and what the packages stage fetches for apt, with either backend (an ordinary user's rootless builds use ~/.cache/vmdeb/debs)."},
	"insecure":                   {def: "false", text: "Accept an InRelease that does not verify, with a loud warning; the files' hashes are still checked (bootstrap: native only)."},
	"kernel":                     {def: "per architecture (linux-image-amd64 on amd64)", text: "The kernel package, or none for no kernel."},
	"device-tree":                {text: "The board's device tree for the boot loader to load, relative to the kernel's /usr/lib/linux-image-VERSION/, e.g. rockchip/rk3399-rockpro64.dtb (architectures that use device trees only, with a live-iso or disk output)."},
	"packages":                   {def: "[]", text: "Packages installed with apt in the chroot, Recommends included: NAME, NAME=VERSION or NAME/SUITE."},
	"common-packages":            {def: "[]", text: "Packages installed with apt in a stage of their own before packages:, Recommends included, as part of the image. Every image with the same base system and the same common-packages reuses that stage from the stage cache: list there what a family of images has in common (firmware, localisation), in the file they all include. The image is what installing both lists in one apt run gives, but where a dependency of the common packages has alternatives: apt chose one before it knew the image's own packages, and the image keeps it."},
	"custom-packages":            {def: "[]", text: "Local .deb files installed with apt, their dependencies from the mirror."},
	"debconf":                    {def: "[]", text: "Answers given to debconf before the packages are installed, one debconf-set-selections(1) line each: OWNER QUESTION TYPE VALUE, e.g. firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true."},
	"users":                      {def: "[]", text: "Accounts created in the image, each a mapping of the keys under USERS below."},
	"users[].name":               {required: true, text: "The user's login name."},
	"users[].password":           {text: "The password in clear, hashed at build time."},
	"users[].password-hash":      {text: "The password as a crypt(3) hash (what mkpasswd(1) prints)."},
	"users[].sudo":               {def: "false", text: "Put the user in the sudo group."},
	"users[].shell":              {def: "/bin/bash", text: "The user's login shell."},
	"users[].groups":             {def: "[]", text: "Further groups the user is a member of."},
	"root":                       {def: "{lock: true}", text: "What happens to root's password: locked, or set (the keys under ROOT below)."},
	"root.lock":                  {def: "true, unless a password is given", text: "Lock root's password."},
	"root.password":              {text: "Root's password in clear, hashed at build time."},
	"root.password-hash":         {text: "Root's password as a crypt(3) hash."},
	"hostname":                   {def: "debian", text: "The image's host name."},
	"customise":                  {text: "The hook: an executable file run after the packages are installed, as HOOK ROOTFS, with VMDEB_ROOTFS, VMDEB_NAME, VMDEB_ARCH, VMDEB_SUITE and others in its environment."},
	"hook-timeout":               {def: "1h", text: "The hook is killed and the build fails after this long."},
	"live":                       {text: "The live ISO's options (live-iso outputs): the keys under LIVE ISO below."},
	"live.title":                 {def: "Debian GNU/Linux SUITE (ARCH)", text: "The boot menu's title."},
	"live.volume-id":             {def: "from name, upper-cased", text: "The ISO's volume id: at most 32 characters of A-Z a-z 0-9 _ . - and space."},
	"live.splash":                {text: "A PNG image shown behind the ISOLINUX and GRUB menus."},
	"live.compression":           {def: "xz", text: "The squashfs compressor."},
	"live.kernel-params":         {def: "[]", text: "Extra kernel parameters for the live entries, one per list item."},
	"live.installer":             {def: "false", text: "Put debian-installer on the ISO (Install, Graphical install, Install with speech synthesis), fetched from the mirror and verified against the archive's signed Release."},
	"live.locales":               {def: "[]", text: "A localisation submenu: locale names, or all."},
	"outputs":                    {required: true, text: "What the build writes: a list of mappings, each with the keys under OUTPUTS below."},
	"outputs[].type":             {required: true, text: "The output's type: live-iso (a hybrid ISO), disk (a bootable VM disk image), tarball (compressed by the file name's extension), directory, squashfs (a directory with filesystem.squashfs, vmlinuz and initrd.img), ext4 (the root file system as a bare ext4 image, for a kernel booted directly, a container or dd onto a partition), or oci (a container image: an OCI image layout in a tar file, which podman load, docker load and skopeo's oci-archive: read; see tag, cmd, entrypoint, env and labels)."},
	"outputs[].path":             {required: true, text: "Where the output is written, relative to the config file (or to --outdir)."},
	"outputs[].mode":             {def: "0600 for tarball, disk, squashfs, ext4 and oci; 0644 for live-iso", text: "The output file's permissions, in octal (quote it: \"0644\"), before the umask. Tarballs, disk images, squashfs and ext4 file systems and container images hold /etc/shadow readably; a directory output keeps the image's own modes."},
	"outputs[].size":             {disk: true, required: true, text: "The whole image's size, e.g. 4G; too small is an error naming the size needed. An ext4 output takes it too (optional there: the file system's size, by default its content plus a quarter and 64M)."},
	"outputs[].format":           {disk: true, def: "from the extension (.qcow2, else raw)", text: "The image file's format; both are sparse."},
	"outputs[].partition-table":  {disk: true, def: string(disk.GPT), text: "The partition table."},
	"outputs[].filesystem":       {disk: true, def: string(disk.Ext4), text: "The root file system. xfs needs a host whose mkfs.xfs -p takes a directory (xfsprogs 6.17 or later)."},
	"outputs[].boot-size":        {disk: true, text: "The size of a separate /boot partition (ext4; ext2 beside an ext2 root)."},
	"outputs[].boot-filesystem":  {disk: true, def: "ext4 (ext2 beside an ext2 root)", text: "The separate /boot's file system (with boot-size): ext4, ext3, ext2, or vfat for a board whose firmware reads FAT (bootloader: none)."},
	"outputs[].partition-offset": {disk: true, def: "1M", text: "Where the first partition starts, a whole number of MiB: the room before it holds the partition table and a board's boot loader, which the image-hook writes (e.g. u-boot at 8K)."},
	"outputs[].image-hook":       {disk: true, text: "A script run as SCRIPT ROOTDIR IMAGE as vmdebootstrap ran its --customize script, once the image file is partitioned and before its file systems are made from ROOTDIR: ROOTDIR is the image's root tree (its /boot and /boot/efi in it; /proc mounted), IMAGE the raw image file, so that it can write a board's boot loader before the first partition (dd conv=notrunc) and change the image's files. It runs in a mount namespace of its own, in the config's directory, with the customise hook's environment and VMDEB_IMAGE, within hook-timeout; the image is checked after. Not in rootless builds (isolation: userns) yet."},
	"outputs[].swap-size":        {disk: true, text: "The size of a swap partition."},
	"outputs[].esp-size":         {disk: true, def: "256M", text: "The EFI system partition's size (UEFI boot loaders)."},
	"outputs[].bootloader":       {disk: true, def: "grub-hybrid on amd64, grub-uefi on arm64 (per architecture)", text: "The boot loader: grub-hybrid is both GRUBs on a GPT with a BIOS boot partition; extlinux boots BIOS only (MBR, or GPT with the boot partition marked LegacyBIOSBootable; ext2/3/4 or btrfs); none installs none."},
	"outputs[].network":          {disk: true, def: string(disk.Networkd), text: "DHCP on the first interface with systemd-networkd (and systemd-resolved) or ifupdown, or none."},
	"outputs[].grow-root":        {disk: true, def: "false", text: "Grow the root partition and file system to the disk's end on first boot."},
	"outputs[].kernel-params":    {disk: true, def: "[]", text: "Added to the kernel command line, one per list item (root by UUID and the serial console are always there)."},
	"outputs[].tag":              {def: "the config's name, :latest", text: "An oci output's image name, NAME or NAME:TAG (e.g. vmdeb:1.0, or HOST:PORT/tools/vmdeb:1.0 for a registry), as docker tag takes it; :latest when no tag is given. podman load and docker load name the image so."},
	"outputs[].cmd":              {def: "[/bin/bash], or none with entrypoint", text: "An oci output's default command (the image config's Cmd): the program and its arguments, one per list item; docker run IMAGE ARGS replaces it."},
	"outputs[].entrypoint":       {def: "[]", text: "An oci output's entry point (the image config's Entrypoint), one item per argument: the program every container runs, with cmd (or the arguments of docker run IMAGE ARGS) after it."},
	"outputs[].env":              {def: "a PATH of /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin and /bin", text: "An oci output's environment, NAME=VALUE per item; the default PATH comes first unless a PATH is given."},
	"outputs[].labels":           {def: "{}", text: "An oci output's labels (the image config's Labels), a mapping of names to values, e.g. org.opencontainers.image.source: URL."},
	"isolation":                  {def: "host for root, userns for anybody else", text: "Where the build runs: host (as root on this machine), userns (an ordinary user's user namespace with the subordinate ids of /etc/subuid and /etc/subgid) or vm (a builder VM of a chosen Debian release; needs only qemu). vmdeb build --isolation overrides it."},
	"secure-boot":                {def: "auto", text: "Whether outputs that boot on UEFI (live ISOs, disks with grub-uefi or grub-hybrid) go through Debian's signed chain: shim (signed by Microsoft's UEFI CA), the signed GRUB and the signed kernel, fetched from the build's mirror and verified through its signed Release, so PCs with Secure Boot on start them. auto: where Debian signs them (amd64, arm64, buster on); true: an error where it does not; false: vmdeb's own, unsigned GRUB image."},
	"builder":                    {text: "The builder VM of isolation: vm (the keys under BUILDER VM below)."},
	"builder.suite":              {def: "the image's suite", text: "The builder VM's Debian release."},
	"builder.memory":             {def: "2G", text: "The builder VM's memory (at least 512M)."},
	"builder.cpus":               {def: "the host's, at most 4", text: "The builder VM's CPUs (1 to 64)."},
	"builder.scratch-size":       {def: "20G", text: "The builder VM's work disk (at least 2G)."},
}

// keyValues are the valid values of the enumerated keys: the lists
// validation checks them against.
func keyValues() map[string][]string {
	locales := []string{"all"}
	for _, l := range live.Locales {
		locales = append(locales, l.Locale)
	}
	return map[string][]string{
		"suite":                     apt.SuiteNames(),
		"builder.suite":             apt.SuiteNames(),
		"architecture":              arch.Names(),
		"variant":                   strs(Variants),
		"bootstrap":                 strs(Backends),
		"isolation":                 strs(Isolations),
		"secure-boot":               strs(SecureBootModes),
		"live.compression":          live.Compressions(),
		"live.locales":              locales,
		"outputs[].type":            strs(OutputTypes),
		"outputs[].format":          strs(disk.Formats),
		"outputs[].partition-table": strs(disk.PartitionTables),
		"outputs[].filesystem":      strs(disk.Filesystems),
		"outputs[].bootloader":      strs(disk.Bootloaders),
		"outputs[].boot-filesystem": strs(disk.BootFilesystems),
		"outputs[].network":         strs(disk.Networks),
	}
}

func strs[T ~string](v []T) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = string(x)
	}
	return s
}

// Keys lists every config key, in the order of the Go structures, with
// its type, default, valid values and description.
func Keys() []Key {
	values := keyValues()
	var keys []Key
	add := func(path, typ string, _ reflect.Type) {
		d := keyText[path]
		k := Key{Path: path, Type: typ, Default: d.def, Required: d.required, Text: d.text, Disk: d.disk, Values: values[path]}
		if typ == "boolean" {
			k.Values = []string{"true", "false"}
		}
		keys = append(keys, k)
	}
	add("include", "path or list of paths", nil)
	walkKeys(reflect.TypeOf(Spec{}), "", add)
	return keys
}

// walkKeys calls add with the path, type name and Go type of every yaml-tagged
// field of t, depth first: a mapping's keys after the mapping, a list of
// mappings' keys (NAME[].KEY) after the list.
func walkKeys(t reflect.Type, prefix string, add func(path, typ string, ft reflect.Type)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeOf(Size{}):
			add(path, "size, e.g. 4G, 512M", ft)
		case ft == reflect.TypeOf(Duration{}):
			add(path, "duration, e.g. 90s, 30m, 1h", ft)
		case ft.Kind() == reflect.Struct:
			add(path, "mapping", ft)
			walkKeys(ft, path+".", add)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			add(path, "list of mappings", ft)
			walkKeys(ft.Elem(), path+"[].", add)
		case ft.Kind() == reflect.Slice:
			add(path, "list of strings", ft)
		case ft.Kind() == reflect.Map:
			add(path, "mapping of strings", ft)
		case ft.Kind() == reflect.Bool:
			add(path, "boolean", ft)
		case ft.Kind() == reflect.Int:
			add(path, "integer", ft)
		default:
			add(path, "string", ft)
		}
	}
}
