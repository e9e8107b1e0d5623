package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func put(t *testing.T, root, rel, data string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantLink(t *testing.T, root, rel, target string) {
	t.Helper()
	got, err := os.Readlink(filepath.Join(root, rel))
	if err != nil {
		t.Errorf("%s: %v", rel, err)
	} else if got != target {
		t.Errorf("%s -> %s, want %s", rel, got, target)
	}
}

// fakeSystemd makes a usr-merged root with the units PrepareRootfs enables,
// their [Install] sections as Debian's systemd ships them.
func fakeSystemd(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/lib", "usr/sbin", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"lib", "sbin", "bin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	u := "usr/lib/systemd/system/"
	put(t, root, u+"systemd-networkd.service", "[Unit]\nDescription=Network Configuration\n\n[Service]\nExecStart=/usr/lib/systemd/systemd-networkd\n\n[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\nAlias=dbus-org.freedesktop.network1.service\n\n# comment\nAlso=systemd-network-generator.service\n")
	put(t, root, u+"systemd-networkd.socket", "[Socket]\nListenNetlink=route 1361\n[Install]\nWantedBy=sockets.target\n")
	put(t, root, u+"systemd-network-generator.service", "[Install]\nWantedBy=sysinit.target\n")
	put(t, root, u+"serial-getty@.service", "[Unit]\nDescription=Serial Getty on %I\n[Install]\nWantedBy=getty.target\n")
	put(t, root, u+"multi-user.target", "[Unit]\nDescription=Multi-User System\n")
	put(t, root, "etc/hostname", "builder\n")
	put(t, root, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tbuilder\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	return root
}

func testLayout(t *testing.T, o Options) Layout {
	t.Helper()
	l, err := Plan(o, 10*mib)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPrepareRootfs(t *testing.T) {
	root := fakeSystemd(t)
	o := Options{Size: 2 << 30, Arch: archOf(t, "amd64"), Hostname: "vm1"}
	l := testLayout(t, o)
	o, err := o.normalize()
	if err != nil {
		t.Fatal(err)
	}
	notes, err := prepareRootfs(root, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "etc/fstab"); got != RenderFstab(l) {
		t.Errorf("fstab:\n%s", got)
	}
	if fi, err := os.Stat(filepath.Join(root, "boot/efi")); err != nil || !fi.IsDir() {
		t.Errorf("no /boot/efi mount point: %v", err)
	}
	if got := read(t, root, "etc/hostname"); got != "vm1\n" {
		t.Errorf("hostname %q", got)
	}
	if got := read(t, root, "etc/hosts"); !strings.Contains(got, "127.0.1.1\tvm1\n") || strings.Contains(got, "builder") || !strings.Contains(got, "::1") {
		t.Errorf("hosts:\n%s", got)
	}
	network := read(t, root, "etc/systemd/network/90-vmdeb-dhcp.network")
	for _, want := range []string{"[Match]\nName=en* eth*\n", "[Network]\nDHCP=yes\n"} {
		if !strings.Contains(network, want) {
			t.Errorf(".network lacks %q:\n%s", want, network)
		}
	}
	u := "/usr/lib/systemd/system/"
	e := "etc/systemd/system/"
	wantLink(t, root, e+"multi-user.target.wants/systemd-networkd.service", u+"systemd-networkd.service")
	wantLink(t, root, e+"sockets.target.wants/systemd-networkd.socket", u+"systemd-networkd.socket")
	wantLink(t, root, e+"sysinit.target.wants/systemd-network-generator.service", u+"systemd-network-generator.service")
	wantLink(t, root, e+"dbus-org.freedesktop.network1.service", u+"systemd-networkd.service")
	wantLink(t, root, e+"getty.target.wants/serial-getty@ttyS0.service", u+"serial-getty@.service")
	if len(notes) != 1 || !strings.Contains(notes[0], "systemd-resolved") {
		t.Errorf("notes %q, want one about systemd-resolved", notes)
	}
	if _, err := os.Lstat(filepath.Join(root, "usr/local/sbin/vmdeb-growroot")); err == nil {
		t.Error("grow-root installed without being asked for")
	}

	// With resolved in the image, it is enabled too and nothing is missing.
	put(t, root, "usr/lib/systemd/system/systemd-resolved.service", "[Install]\nWantedBy=sysinit.target\nAlias=dbus-org.freedesktop.resolve1.service\n")
	if notes, err = prepareRootfs(root, l, o); err != nil || len(notes) != 0 {
		t.Fatalf("notes %q, err %v", notes, err)
	}
	wantLink(t, root, e+"sysinit.target.wants/systemd-resolved.service", u+"systemd-resolved.service")
}

func TestPrepareRootfsReplacesFiles(t *testing.T) {
	// A staging tree of hard links must never write through to the tree it
	// was linked from.
	root := fakeSystemd(t)
	outside := filepath.Join(t.TempDir(), "hostname")
	if err := os.WriteFile(outside, []byte("original\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "etc/hostname"))
	if err := os.Link(outside, filepath.Join(root, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
	o := Options{Size: 2 << 30, Arch: archOf(t, "amd64"), Hostname: "vm2", Network: "none"}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "etc/hostname"); got != "vm2\n" {
		t.Errorf("hostname %q", got)
	}
	b, _ := os.ReadFile(outside)
	if string(b) != "original\n" {
		t.Errorf("the hard-linked original became %q", b)
	}
}

func TestPrepareRootfsStaysInside(t *testing.T) {
	// An absolute link in the image points into the image, not the host.
	root := fakeSystemd(t)
	for _, d := range []string{"srv/net", "etc/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/srv/net", filepath.Join(root, "etc/systemd/network")); err != nil {
		t.Fatal(err)
	}
	o := Options{Size: 2 << 30, Arch: archOf(t, "amd64")}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "srv/net/90-vmdeb-dhcp.network")); err != nil {
		t.Errorf("the .network file did not follow the link inside the image: %v", err)
	}
	if _, err := os.Stat("/srv/net/90-vmdeb-dhcp.network"); err == nil {
		t.Fatal("written on the host")
	}
}

func TestPrepareRootfsMissing(t *testing.T) {
	amd64 := archOf(t, "amd64")
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"networkd", Options{Network: "networkd"}, "no systemd-networkd"},
		{"ifupdown", Options{Network: "ifupdown"}, "no ifup"},
		{"growroot", Options{Network: "none", GrowRoot: true}, "growpart or sfdisk"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			c.o.Size, c.o.Arch = 1<<30, amd64
			err := PrepareRootfs(root, testLayout(t, c.o), c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestPrepareRootfsIfupdown(t *testing.T) {
	root := fakeSystemd(t)
	put(t, root, "usr/sbin/ifup", "")
	put(t, root, "etc/network/interfaces", "auto lo\niface lo inet loopback\n")
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), Network: "ifupdown"}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "etc/network/interfaces"); !strings.HasPrefix(got, "source /etc/network/interfaces.d/*\n") || !strings.Contains(got, "iface lo inet loopback") {
		t.Errorf("interfaces:\n%s", got)
	}
	got := read(t, root, "etc/network/interfaces.d/vmdeb-dhcp")
	if !strings.Contains(got, "auto /e[nt]*/1=vmdeb-dhcp\n") || !strings.Contains(got, "iface vmdeb-dhcp inet dhcp\n") {
		t.Errorf("interfaces.d/vmdeb-dhcp:\n%s", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/network")); err == nil {
		t.Error("networkd configured as well")
	}
}

func TestPrepareRootfsGrowRoot(t *testing.T) {
	root := fakeSystemd(t)
	for _, f := range []string{"usr/sbin/sfdisk", "usr/bin/findmnt", "usr/bin/partx", "usr/lib/systemd/systemd-growfs"} {
		put(t, root, f, "")
	}
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), Network: "none", GrowRoot: true}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "usr/local/sbin/vmdeb-growroot"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("script: %v %v", fi, err)
	}
	unit := read(t, root, "etc/systemd/system/vmdeb-growroot.service")
	if !strings.Contains(unit, "ExecStart=/usr/local/sbin/vmdeb-growroot\n") || !strings.Contains(unit, "ConditionPathExists=!/var/lib/vmdeb/growroot.done") {
		t.Errorf("unit:\n%s", unit)
	}
	wantLink(t, root, "etc/systemd/system/multi-user.target.wants/vmdeb-growroot.service", "/etc/systemd/system/vmdeb-growroot.service")
}

func TestPrepareRootfsDefaultGrub(t *testing.T) {
	root := fakeSystemd(t)
	put(t, root, "etc/default/grub", "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n#GRUB_TERMINAL=console\n")
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), Network: "none", KernelParams: []string{"net.ifnames=0"}}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	got := read(t, root, "etc/default/grub")
	want := "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n" +
		"GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8 net.ifnames=0\"\n" +
		"GRUB_TERMINAL=\"console serial\"\n" +
		"GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"
	if got != want {
		t.Errorf("/etc/default/grub:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrepareRootfsInittab(t *testing.T) {
	root := t.TempDir()
	put(t, root, "etc/inittab", "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n")
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), Network: "none"}
	if err := PrepareRootfs(root, testLayout(t, o), o); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "etc/inittab"); !strings.HasSuffix(got, "V0:2345:respawn:/sbin/getty -L ttyS0 115200 vt100\n") {
		t.Errorf("inittab:\n%s", got)
	}
}

func TestTemplateOf(t *testing.T) {
	for in, want := range map[string]string{
		"serial-getty@ttyS0.service": "serial-getty@.service",
		"getty@.service":             "getty@.service",
		"systemd-networkd.service":   "systemd-networkd.service",
	} {
		if got := templateOf(in); got != want {
			t.Errorf("templateOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestSetDebconfAnswer(t *testing.T) {
	db := "Name: man-db/install-setuid\nTemplate: man-db/install-setuid\nValue: false\nOwners: man-db\nFlags: seen\n\n" +
		"Name: grub2/force_efi_extra_removable\nTemplate: grub2/force_efi_extra_removable\nOwners: grub-efi-amd64\n\n" +
		"Name: tzdata/Areas\nTemplate: tzdata/Areas\nValue: Etc\nOwners: tzdata\nFlags: seen\n"
	got, ok := setDebconfAnswer(db, "grub2/force_efi_extra_removable", "true")
	want := strings.Replace(db, "Template: grub2/force_efi_extra_removable\nOwners: grub-efi-amd64\n",
		"Template: grub2/force_efi_extra_removable\nValue: true\nOwners: grub-efi-amd64\nFlags: seen\n", 1)
	if !ok || got != want {
		t.Errorf("unanswered question:\n%s\nwant\n%s", got, want)
	}
	// Answered false before, flagged otherwise: replaced, seen added.
	db2 := strings.Replace(db, "Owners: grub-efi-amd64\n", "Value: false\nOwners: grub-efi-amd64\nFlags: triggered\n", 1)
	got, ok = setDebconfAnswer(db2, "grub2/force_efi_extra_removable", "true")
	if !ok || !strings.Contains(got, "Name: grub2/force_efi_extra_removable\nTemplate: grub2/force_efi_extra_removable\nValue: true\nOwners: grub-efi-amd64\nFlags: triggered seen\n\n") {
		t.Errorf("answered question:\n%s", got)
	}
	if !strings.Contains(got, "Name: man-db/install-setuid\nTemplate: man-db/install-setuid\nValue: false\n") {
		t.Error("another question changed")
	}
	if _, ok := setDebconfAnswer(db, "grub2/nothing", "true"); ok {
		t.Error("a question the database lacks was found")
	}
}

func TestForceExtraRemovable(t *testing.T) {
	dir := t.TempDir()
	r := root(dir)
	// No debconf database, or no GRUB for UEFI in it: nothing written.
	if err := r.forceExtraRemovable(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, debconfDB)); err == nil {
		t.Error("a debconf database was made")
	}
	os.MkdirAll(filepath.Join(dir, "var/cache/debconf"), 0o755)
	other := "Name: tzdata/Areas\nTemplate: tzdata/Areas\nValue: Etc\nOwners: tzdata\nFlags: seen\n"
	os.WriteFile(filepath.Join(dir, debconfDB), []byte(other), 0o644)
	if err := r.forceExtraRemovable(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, debconfDB)); string(b) != other {
		t.Errorf("database without the question changed:\n%s", b)
	}
	os.WriteFile(filepath.Join(dir, debconfDB), []byte(other+"\nName: grub2/force_efi_extra_removable\nTemplate: grub2/force_efi_extra_removable\nValue: false\nOwners: grub-efi-arm64\nFlags: seen\n"), 0o644)
	if err := r.forceExtraRemovable(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, debconfDB)); !strings.Contains(string(b), "Template: grub2/force_efi_extra_removable\nValue: true\n") {
		t.Errorf("not answered:\n%s", b)
	}
}
