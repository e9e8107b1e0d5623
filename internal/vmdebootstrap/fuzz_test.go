package vmdebootstrap

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseINI(f *testing.F) {
	f.Add([]byte("[config]\nimage = a.img\nsize = 2G\npackage = vim, less\n"))
	f.Add([]byte("[config\n"))
	f.Add([]byte("x=y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseINI(bytes.NewReader(data), "vm.conf")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "vm.conf:") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		for k := range m {
			if k == "" {
				t.Fatal("an empty key was accepted")
			}
		}
	})
}
