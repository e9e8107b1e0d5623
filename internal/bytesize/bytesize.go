// Package bytesize writes byte counts for people.
package bytesize

import "fmt"

// Format writes n in binary units with one decimal: "512 B", "1.5 GiB",
// "300.0 MiB". Messages that need the exact count add it themselves.
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
	return fmt.Sprintf("%.1f %ciB", float64(n)/div, "KMGTPE"[exp])
}
