package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"vmdeb/internal/remotecache"
)

// remoteFlags choose the remote cache: --remote-cache oci://HOST/REPO (or
// VMDEB_REMOTE_CACHE; the option wins, "off" disables it) and
// --remote-cache-insecure (plain HTTP to a registry not on this host).
type remoteFlags struct {
	url      string
	insecure bool
}

func (f *remoteFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.url, "remote-cache", "", "share cached stages and packages through this OCI registry repository, oci://HOST[:PORT]/REPO (default $"+remotecache.EnvVar+"; \"off\" disables it; docs/remote-cache.md)")
	c.Flags().BoolVar(&f.insecure, "remote-cache-insecure", false, "speak plain HTTP to the --remote-cache registry even though it is not on this host")
}

// ref is the chosen registry (nil: none). Bad input is a usage error
// naming the option.
func (f remoteFlags) ref() (*remotecache.Ref, error) {
	u, insecure := f.url, f.insecure
	if u == "" {
		u = os.Getenv(remotecache.EnvVar)
	}
	if os.Getenv(remotecache.EnvInsecure) == "1" {
		insecure = true
	}
	r, err := remotecache.Parse(u, insecure)
	if err != nil {
		if f.url == "" {
			err = fmt.Errorf("%v (from $%s)", err, remotecache.EnvVar)
		}
		return nil, &usageError{err}
	}
	return r, nil
}

// export checks the choice and passes it on, through the environment, to
// the build's own process.
func (f remoteFlags) export() error {
	r, err := f.ref()
	if err != nil {
		return err
	}
	if r == nil {
		os.Setenv(remotecache.EnvVar, "off")
		return nil
	}
	os.Setenv(remotecache.EnvVar, r.String())
	if f.insecure {
		os.Setenv(remotecache.EnvInsecure, "1")
	}
	return nil
}

// open is the remote cache's client in the build's own process (nil:
// none).
func (f remoteFlags) open() (*remotecache.Client, error) {
	r, err := f.ref()
	if err != nil || r == nil {
		return nil, err
	}
	return remotecache.New(*r)
}
