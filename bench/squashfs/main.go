// Command squashfs makes one squashfs of a tree the way a vmdeb build
// does (live.MakeSquashfs: through the block cache when -cache is given,
// mksquashfs alone when it is not), for bench/squashfs-blocks.sh.
//
//	go run ./bench/squashfs [-cache DIR] [-comp xz] [-epoch N] TREE OUT
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/live"
)

func main() {
	cache := flag.String("cache", "", "block cache directory (none: mksquashfs alone)")
	comp := flag.String("comp", "xz", "compressor")
	epoch := flag.Int64("epoch", 1700000000, "SOURCE_DATE_EPOCH")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: squashfs [-cache DIR] [-comp xz] [-epoch N] TREE OUT")
		os.Exit(2)
	}
	var rep live.BlockReport
	o := live.SquashfsOptions{Compression: *comp, SourceDateEpoch: *epoch, BlockCache: *cache}
	if *cache != "" {
		o.Blocks = &rep
	}
	log := buildlog.New(os.Stderr, "", nil)
	if err := live.MakeSquashfs(context.Background(), log, flag.Arg(0), flag.Arg(1), o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *cache != "" {
		if !rep.Used {
			fmt.Fprintln(os.Stderr, "the block cache was not used:", rep.Why)
			os.Exit(1)
		}
		fmt.Printf("blocks %d reused %d compressed %d\n", rep.Blocks, rep.Reused, rep.Compressed)
	}
}
