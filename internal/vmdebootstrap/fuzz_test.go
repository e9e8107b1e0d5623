package vmdebootstrap

import (
	"bytes"
	"strings"
	"testing"

	"vmdeb/internal/config"
)

func FuzzParseINI(f *testing.F) {
	f.Add([]byte("[config]\nimage = a.img\nsize = 2G\npackage = vim, less\n"))
	f.Add([]byte("[config\n"))
	f.Add([]byte("x=y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := ParseINI(bytes.NewReader(data), "vm.conf")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "vm.conf:") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		for _, kv := range m {
			if kv.key == "" {
				t.Fatal("an empty key was accepted")
			}
		}
	})
}

// FuzzArgs: vmdebootstrap command lines (arguments separated by NUL)
// never panic, and whatever the front end accepts turns into YAML that
// the config loader decodes as one document of known keys (no value
// breaks out of its key).
func FuzzArgs(f *testing.F) {
	f.Add("--image\x00vm.img\x00--size\x002G\x00--distribution\x00trixie\x00--arch\x00amd64")
	f.Add("--tarball\x00x.tar\x00--root-password\x00a\nb: c\x00--hostname\x00h\x00--distribution\x00trixie")
	f.Add("--image\x00a.img\x00--size\x00999T\x00--user\x00u/p:w\x00--sudo\x00--mirror\x00http://u:p@m/debian")
	f.Add("--debootstrapopts\x00--variant=buildd --include=a,b\x00--squash\x00d\x00--distribution\x00sid")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		for _, a := range args {
			if strings.HasPrefix(a, "--c") || strings.HasPrefix(a, "--g") {
				return // reads files (--config, --customize, --generate-manpage)
			}
		}
		s, err := ParseWith(args, nil)
		if err != nil || s.Action != "" || s.Validate() != nil {
			return
		}
		b, err := s.Config("/fuzz", "/run/fuzz", nil)
		if err != nil {
			return
		}
		y := b.YAML
		if _, err := config.Parse([]byte(y), "/fuzz/c.yaml"); err != nil {
			msg := err.Error()
			if strings.Contains(msg, "not valid YAML") || strings.Contains(msg, "unknown key") || strings.Contains(msg, "second YAML document") {
				t.Fatalf("%q gave YAML the loader cannot read: %v\n%s", args, err, y)
			}
		}
	})
}
