package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"vmdeb/internal/publish"
	"vmdeb/internal/report"
)

// publishFlags are vmdeb publish's options.
type publishFlags struct {
	to, signKey string
	add, json   bool
}

func publishCmd() *cobra.Command {
	var f publishFlags
	c := &cobra.Command{
		Use:   "publish JOB-OUTPUT-DIR... --to DIR",
		Short: "Gather the outputs of a plan's jobs into a release tree with checksums and signatures",
		Long: `Gather the outputs of every job of a plan (each built by vmdeb build --plan
PLAN --job ID --outdir JOB-OUTPUT-DIR) into one release tree in DIR, laid
out as Debian publishes its images:

  ARCH/iso-hybrid/  live ISOs           ARCH/disk/     disk images
  ARCH/webboot/     squashfs outputs    ARCH/tarball/  root file system tarballs
  ARCH/ext4/        ext4 file systems   ARCH/oci/      container images

each output beside its package manifest (NAME.packages), its SBOMs, the
list of the files on it (NAME.contents: ISOs, tarballs, squashfs), its
build log (NAME.log), and in each directory SHA256SUMS and SHA512SUMS;
with --sign-key their detached ASCII-armoured signatures, SHA256SUMS.sign
and SHA512SUMS.sign, made by the user's GnuPG (GNUPGHOME is honoured).

The build report in each directory (NAME.report.json, a successful build
of a plan's job) says what was built; publish refuses, writing nothing,
a directory with no report, a failed build, reports of different plans,
a job of the plan with no directory, two jobs publishing one name, and a
file whose size or SHA256 is not what its report recorded. Directory
outputs are not published.

The tree is made beside DIR and renamed to DIR when complete; files are
hard links to the jobs' files when on the same file system (else
reflinks or copies). DIR must be new or empty, unless --add adds the
jobs' files to the tree already there (the names must be new; the
checksum files of the directories that get files are rewritten, and
signed again with --sign-key).

With --json the summary is a JSON document on stdout (docs/json.md);
the progress goes to stderr.

Exit status: 0 published; 1 publishing failed (nothing was published);
2 the jobs' directories or the options were refused (nothing was written).`,
		Example: `  vmdeb publish out/live-xfce-amd64 out/live-xfce-arm64 --to release
  vmdeb publish out/* --to release --sign-key 0x1234ABCD --json`,
		Args: func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return &usageError{fmt.Errorf("publish takes the jobs' output directories (see vmdeb publish --help)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, a []string) error {
			if f.to == "" {
				return &usageError{fmt.Errorf("give the release tree's directory with --to DIR (see vmdeb publish --help)")}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			return runPublish(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), a, f)
		},
	}
	c.Flags().StringVar(&f.to, "to", "", "the release tree's directory (new or empty, unless --add)")
	c.Flags().BoolVar(&f.add, "add", false, "add the jobs' files to the tree already in --to")
	c.Flags().StringVar(&f.signKey, "sign-key", "", "sign SHA256SUMS and SHA512SUMS with this GnuPG key (gpg --local-user)")
	c.Flags().BoolVar(&f.json, "json", false, "print the summary as JSON on stdout (the progress on stderr)")
	return c
}

// runPublish is vmdeb publish: the progress on stderr, the summary on
// stdout (prose, or JSON whatever the result).
func runPublish(ctx context.Context, stdout, stderr io.Writer, dirs []string, f publishFlags) error {
	s, err := publish.Publish(ctx, publish.Options{Dirs: dirs, To: f.to, Add: f.add, SignKey: f.signKey, Progress: stderr})
	err = publishExit(ctx, err)
	if f.json {
		s.VmdebVersion, s.OK, s.ExitStatus = Version, err == nil, exitCode(err)
		kind := "failed"
		var r *publish.RefusedError
		switch {
		case errors.As(err, &r):
			kind = "preflight"
		case exitCode(err) >= 128:
			kind = "interrupted"
		}
		s.Error = report.ErrorOf(err, kind)
		data, merr := report.Marshal(s)
		if merr != nil {
			return errors.Join(err, merr)
		}
		if _, werr := stdout.Write(data); werr != nil {
			return errors.Join(err, werr)
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, publishProse(s))
	return nil
}

// publishExit gives err its exit status: 2 refused, 130 interrupted,
// 1 anything else.
func publishExit(ctx context.Context, err error) error {
	var r *publish.RefusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &r):
		return &exitError{exitUsage, fmt.Errorf("publish refused, nothing was written:\n%w", err)}
	case ctx.Err() != nil:
		return &exitError{130, fmt.Errorf("interrupted; nothing was published (%w)", err)}
	}
	return &exitError{exitFailed, fmt.Errorf("publish failed, nothing was published: %w", err)}
}

// publishProse is the summary for people: per directory of the tree,
// its files.
func publishProse(s *publish.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %d job(s) of plan %.12s into %s:\n", len(s.Jobs), s.PlanSHA256, s.To)
	for _, d := range s.Directories {
		var names []string
		for _, f := range s.Files {
			if strings.HasPrefix(f.Path, d.Path+"/") && !strings.Contains(f.Path[len(d.Path)+1:], "/") {
				names = append(names, f.Path[len(d.Path)+1:])
			}
		}
		signed := ""
		if d.Signed {
			signed = ", signed by " + s.SignKey
		}
		fmt.Fprintf(&b, "  %s/ (%d files%s)\n", d.Path, d.Files, signed)
		for _, n := range names {
			fmt.Fprintf(&b, "    %s\n", n)
		}
	}
	for _, k := range s.Skipped {
		fmt.Fprintf(&b, "not published: %s's %s output %s: %s\n", k.Job, k.Type, k.Path, k.Reason)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}
