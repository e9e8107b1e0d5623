package ns

import (
	"os"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	data := "# comment\nalice:100000:65536\nbob:165536:1000\n1001:231072:65536\nbob:300000:70000\n"
	for _, c := range []struct {
		name string
		uid  int
		want IDRange
		ok   bool
	}{
		{"alice", 1000, IDRange{100000, 65536}, true},
		{"bob", 1002, IDRange{300000, 70000}, true},   // the first range is too small
		{"carol", 1001, IDRange{231072, 65536}, true}, // by uid
		{"dave", 1003, IDRange{}, false},
	} {
		got, ok := ParseSubIDs(data, c.name, c.uid)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if _, ok := ParseSubIDs("alice:x:65536\nalice:100000\n", "alice", 1); ok {
		t.Error("malformed lines were accepted")
	}
}

func TestFreeSubIDStart(t *testing.T) {
	if got := FreeSubIDStart(""); got != 100000 {
		t.Errorf("empty file: %d", got)
	}
	if got := FreeSubIDStart("a:100000:65536\nb:165536:65536\n"); got != 231072 {
		t.Errorf("after two ranges: %d", got)
	}
	if got := FreeSubIDStart("a:10:20\n"); got != 100000 {
		t.Errorf("below the floor: %d", got)
	}
}

func TestPlanUsernsWithoutSubIDs(t *testing.T) {
	if err := UsernsAllowed(); err != nil {
		t.Skip(err)
	}
	d := t.TempDir()
	uid, gid := d+"/subuid", d+"/subgid"
	os.WriteFile(uid, []byte("someone:100000:65536\n"), 0o644)
	os.WriteFile(gid, []byte(""), 0o644)
	saved := subIDFiles
	subIDFiles = [2]string{uid, gid}
	defer func() { subIDFiles = saved }()
	_, err := PlanUserns()
	if err == nil {
		t.Fatal("no error without subordinate ids")
	}
	msg := err.Error()
	if strings.Contains(msg, "uidmap") {
		t.Skip("newuidmap is not installed here: ", msg)
	}
	for _, want := range []string{"usermod --add-subuids 165536-231071 --add-subgids 100000-165535 ", "/etc/subuid"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q: %s", want, msg)
		}
	}
}
