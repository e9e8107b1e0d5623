// Package bytesize writes byte counts for people.
package bytesize

import (
	"fmt"
	"strings"
)

// Format writes n in binary units with one decimal, none when it is 0:
// "512 B", "1.5 GiB", "300 MiB". Messages that need the exact count add
// it themselves.
func Format[N ~int64 | ~uint64 | ~int](n N) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := float64(unit), 0
	for m := uint64(n) / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/div), ".0")
	return fmt.Sprintf("%s %ciB", v, "KMGTPE"[exp])
}
