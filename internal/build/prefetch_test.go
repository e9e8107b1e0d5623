package build

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePrintURIs(t *testing.T) {
	out := "Reading package lists...\n" +
		"'http://m.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb' hello_2.10-3_amd64.deb 53076 MD5Sum:205bff7f0368ca10574c658af3cbb572\n" +
		"'https://m.example/debian/pool/main/a/apt/libapt_1%3a3.0.3_all.deb' libapt_1%3a3.0.3_all.deb 1000 SHA256:" + strings.Repeat("ab", 32) + "\n" +
		"'file:/srv/debian/pool/main/x/x/x_1_all.deb' x_1_all.deb 10 MD5Sum:00\n"
	items, err := parsePrintURIs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Name != "hello_2.10-3_amd64.deb" || items[0].Want.Size != 53076 || items[0].Want.SHA256 != "" ||
		items[1].URL != "https://m.example/debian/pool/main/a/apt/libapt_1%3a3.0.3_all.deb" {
		t.Errorf("got %+v", items)
	}
	if got, want := showArgs(items), []string{"show", "hello:amd64=2.10-3", "libapt=1:3.0.3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("apt-cache arguments %q, want %q", got, want)
	}
	for _, bad := range []string{
		"'http://m/a.deb' ../a_1_all.deb 10 MD5Sum:00",
		"'http://m/a.deb' a/b_1_all.deb 10 MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb -1 MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb x MD5Sum:00",
		"'http://m/a.deb' a_1_all.deb 10",
		"'http://m/a.deb' a_1_all.tar 10 MD5Sum:00",
		"'http://m/a.deb' a.deb 10 MD5Sum:00",
	} {
		if _, err := parsePrintURIs([]byte(bad + "\n")); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// Each package gets the SHA256 of the index record with its file name and
// size; one without such a record is left to apt.
func TestShaFor(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	records := "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSize: 53076\nSHA256: " + a + "\n\n" +
		"Package: libapt\nVersion: 1:3.0.3\nArchitecture: all\nFilename: pool/main/a/apt/libapt_3.0.3_all.deb\nSize: 1000\nSHA256: " + b + "\n\n" +
		"Package: other\nVersion: 1\nArchitecture: all\nFilename: pool/main/o/other/other_1_all.deb\nSize: 5\nSHA256: " + b + "\n"
	items := []prefetchItem{
		{Name: "hello_2.10-3_amd64.deb"}, {Name: "libapt_1%3a3.0.3_all.deb"}, {Name: "other_1_all.deb"}, {Name: "missing_1_all.deb"},
	}
	items[0].Want.Size, items[1].Want.Size, items[2].Want.Size, items[3].Want.Size = 53076, 1000, 6, 1
	got, err := shaFor(items, []byte(records))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Want.SHA256 != a || got[1].Want.SHA256 != b || got[1].Name != "libapt_1%3a3.0.3_all.deb" {
		t.Errorf("got %+v", got)
	}
}
