package buildlog

import "testing"

func TestNeeds(t *testing.T) {
	var n Needs
	n.Bin("sh", "dash")
	n.Bin("vmdeb-no-such-tool", "nothing")
	n.File("/", "base-files")
	n.File("/vmdeb/no/such/file", "nothing")
	if len(n.Missing) != 2 || n.Missing[0].What != "vmdeb-no-such-tool" || n.Missing[1].What != "/vmdeb/no/such/file" {
		t.Fatalf("got %v", n.Missing)
	}
	if s := n.Missing[0].String(); s != "vmdeb-no-such-tool (install nothing)" {
		t.Errorf("String() = %q", s)
	}
}
