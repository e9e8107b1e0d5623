package bytesize

import "testing"

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		-1:                   "-1 B",
		0:                    "0 B",
		1023:                 "1023 B",
		1024:                 "1 KiB",
		1536:                 "1.5 KiB",
		300 << 20:            "300 MiB",
		3 << 29:              "1.5 GiB",
		4 << 30:              "4 GiB",
		2 << 40:              "2 TiB",
		1<<62 + 1<<61:        "6 EiB",
		(1 << 20) - (1 << 9): "1023.5 KiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Format(uint64(1) << 63); got != "8 EiB" {
		t.Errorf("Format(1<<63) = %q", got)
	}
}
