package config

import (
	"errors"
	"testing"
)

func TestBuilderResolved(t *testing.T) {
	got := Builder{}.Resolved("trixie", 16)
	want := Builder{Suite: "trixie", Memory: Size{Bytes: 2 << 30}, CPUs: 4, Scratch: Size{Bytes: 20 << 30}}
	if got != want {
		t.Errorf("defaults on a 16-CPU host: %+v, want %+v", got, want)
	}
	if got := (Builder{}).Resolved("trixie", 2); got.CPUs != 2 {
		t.Errorf("a 2-CPU host's builder gets %d CPUs", got.CPUs)
	}
	set := Builder{Suite: "bookworm", Memory: Size{Bytes: 1 << 30}, CPUs: 8, Scratch: Size{Bytes: 5 << 30}}
	if got := set.Resolved("trixie", 2); got != set {
		t.Errorf("the config's builder: values replaced: %+v", got)
	}
}

func TestChooseIsolation(t *testing.T) {
	for _, c := range []struct {
		asked, configured Isolation
		root              bool
		want              Isolation
		err               error
	}{
		{"", "", true, Host, nil},
		{"", "", false, Userns, nil},
		{"", VM, false, VM, nil},
		{Userns, VM, true, Userns, nil},
		{"", Host, false, "", ErrHostNeedsRoot},
		{Host, Userns, false, "", ErrHostNeedsRoot},
		{Host, "", true, Host, nil},
	} {
		got, err := ChooseIsolation(c.asked, c.configured, c.root)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("ChooseIsolation(%q, %q, root %v) = %q, %v; want %q, %v", c.asked, c.configured, c.root, got, err, c.want, c.err)
		}
	}
}

func TestParseIsolation(t *testing.T) {
	for _, ok := range []string{"", "host", "userns", "vm"} {
		if got, err := ParseIsolation(ok); err != nil || string(got) != ok {
			t.Errorf("ParseIsolation(%q) = %q, %v", ok, got, err)
		}
	}
	if _, err := ParseIsolation("chroot"); err == nil || err.Error() != `--isolation "chroot": valid are host, userns, vm` {
		t.Errorf("ParseIsolation(chroot): %v", err)
	}
}
