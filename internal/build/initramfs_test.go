package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseInitramfsRequest(t *testing.T) {
	for _, c := range []struct {
		args string
		want initramfsRequest
	}{
		{"-u", initramfsRequest{Mode: 'u'}},
		{"-c -k 6.12.1-amd64 -b /boot", initramfsRequest{'c', "6.12.1-amd64", "/boot"}},
		{"-ck6.12.1-amd64", initramfsRequest{'c', "6.12.1-amd64", ""}},
		{"-v -u -k all", initramfsRequest{'u', "all", ""}},
		{"-t -c -k 6.1 -b/boot", initramfsRequest{'c', "6.1", "/boot"}},
	} {
		got, err := parseInitramfsRequest(strings.Fields(c.args))
		if err != nil || got != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.args, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-v", "-c -k", "-x", "-u extra", "-c -b"} {
		if _, err := parseInitramfsRequest(strings.Fields(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestInitramfsTargets(t *testing.T) {
	c := func(v string) initramfsRequest { return initramfsRequest{'c', v, "/boot"} }
	u := initramfsRequest{Mode: 'u'}
	for _, tc := range []struct {
		name          string
		reqs          []initramfsRequest
		have, kernels []string
		want          []initramfsTarget
	}{
		{"a kernel, then live-boot's trigger: one initramfs",
			[]initramfsRequest{c("6.12"), u, u}, nil, []string{"6.12"},
			[]initramfsTarget{{"6.12", "/boot", false}}},
		{"two kernels, each created once, in order",
			[]initramfsRequest{c("6.12"), u, c("6.1"), c("6.12")}, nil, []string{"6.1", "6.12"},
			[]initramfsTarget{{"6.1", "/boot", false}, {"6.12", "/boot", false}}},
		{"an update alone updates what is there",
			[]initramfsRequest{u}, []string{"6.1"}, []string{"6.1"},
			[]initramfsTarget{{"6.1", "", true}}},
		{"an update with nothing there does nothing",
			[]initramfsRequest{u}, nil, nil, nil},
		{"create all: every kernel",
			[]initramfsRequest{{'c', "all", ""}}, []string{"6.1"}, []string{"6.1", "6.12"},
			[]initramfsTarget{{"6.1", "", true}, {"6.12", "", false}}},
		{"an update of one version",
			[]initramfsRequest{{'u', "6.1", ""}}, []string{"6.1", "6.12"}, nil,
			[]initramfsTarget{{"6.1", "", true}}},
	} {
		got := initramfsTargets(tc.reqs, tc.have, tc.kernels)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// The stand-in writes down what it is asked and passes a deletion on.
func TestInitramfsStandIn(t *testing.T) {
	dir := t.TempDir()
	script := strings.ReplaceAll(initramfsStandIn, initramfsRequests, filepath.Join(dir, "requests"))
	script = strings.ReplaceAll(script, updateInitramfs, filepath.Join(dir, "real"))
	os.WriteFile(filepath.Join(dir, "stand-in"), []byte(script), 0o755)
	os.WriteFile(filepath.Join(dir, "real"), []byte("#!/bin/sh\necho \"real $*\"\n"), 0o755)
	for _, args := range [][]string{{"-c", "-k", "6.12", "-b", "/boot"}, {"-u"}} {
		out, err := exec.Command(filepath.Join(dir, "stand-in"), args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "put off by vmdeb") {
			t.Fatalf("%v: %s %v", args, out, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "requests")); string(got) != "-c -k 6.12 -b /boot\n-u\n" {
		t.Errorf("requests: %q", got)
	}
	for _, args := range [][]string{{"-d", "-k", "6.1"}, {"--version"}, {"-h"}, {"-k", "6.1"}} {
		out, err := exec.Command(filepath.Join(dir, "stand-in"), args...).CombinedOutput()
		if want := "real " + strings.Join(args, " ") + "\n"; err != nil || string(out) != want {
			t.Errorf("%v was not passed on: %q %v", args, out, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "requests")); string(got) != "-c -k 6.12 -b /boot\n-u\n" {
		t.Errorf("requests after what is passed on: %q", got)
	}
	// Before initramfs-tools is unpacked there is nothing to pass on to.
	os.Remove(filepath.Join(dir, "real"))
	if out, err := exec.Command(filepath.Join(dir, "stand-in"), "--version").CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("--version without the real update-initramfs: %q %v", out, err)
	}
}

// What the common-packages stage put off reaches the packages stage
// through the root file system (its /run is gone by then), ahead of what
// that stage puts off itself, and leaves no trace in the image.
func TestPutOffInitramfsKept(t *testing.T) {
	root := t.TempDir()
	st := &State{Rootfs: root}
	if err := keepPutOffInitramfs(st); err != nil {
		t.Fatalf("nothing put off: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, putOffKept)); !os.IsNotExist(err) {
		t.Fatalf("nothing put off, yet %s: %v", putOffKept, err)
	}
	if _, err := putOffInitramfs(st); err != nil {
		t.Fatal(err)
	}
	reqs := filepath.Join(root, initramfsRequests)
	os.WriteFile(reqs, []byte("-u -k all\n"), 0o644)
	if err := keepPutOffInitramfs(st); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(root, "run")) // the chroot's /run goes
	if _, err := putOffInitramfs(st); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(reqs, []byte("-c -k 6.12.1-amd64\n"), 0o644)
	if err := takePutOffInitramfs(st); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(reqs); string(b) != "-u -k all\n-c -k 6.12.1-amd64\n" {
		t.Errorf("requests %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/vmdeb")); !os.IsNotExist(err) {
		t.Errorf("var/lib/vmdeb left in the image: %v", err)
	}
}
