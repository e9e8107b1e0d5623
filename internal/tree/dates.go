package tree

import (
	"time"

	"vmdeb/internal/imgroot"
)

// ClampTimes sets the access and modification times of every file under
// root newer than epoch (SOURCE_DATE_EPOCH) to epoch, links themselves
// rather than their targets, so that every image made from the tree holds
// the same dates whenever it is built. It returns how many it changed. The
// walk enters no link and changes each file through the directory holding
// it, so a link planted in the image cannot lead it to the host's files.
func ClampTimes(root string, epoch int64) (int, error) {
	r, err := imgroot.Open(root)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	t := time.Unix(epoch, 0)
	err = r.Walk("", func(_ string, e imgroot.Entry) error {
		if mt := e.Info().ModTime(); mt.Unix() < epoch || (mt.Unix() == epoch && mt.Nanosecond() == 0) {
			return nil
		}
		n++
		return e.Lutimes(t, t)
	})
	return n, err
}
