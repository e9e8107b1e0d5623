package config

import (
	"slices"
	"strings"
	"testing"
)

// ociConfig is good with its live ISO replaced by the oci output item.
func ociConfig(item string) string {
	return strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n", item, 1)
}

// TestOCIOutput: an oci output takes tag, cmd, entrypoint, env and
// labels; they are refused on other outputs and checked on it, each
// error naming the file, the line, the key and what would be valid.
func TestOCIOutput(t *testing.T) {
	s, err := Load(write(t, ociConfig(`  - type: oci
    path: out/test.tar
    tag: tools/vmdeb:1.0
    cmd: [/usr/local/bin/vmdeb, --help]
    env: [LANG=C.UTF-8, VMDEB_X=1]
    labels:
      org.opencontainers.image.title: vmdeb
`)))
	if err != nil {
		t.Fatal(err)
	}
	o := s.Outputs[0]
	if o.Type != OCI || o.ImageRef(s) != "tools/vmdeb:1.0" || !slices.Equal(o.Cmd, []string{"/usr/local/bin/vmdeb", "--help"}) ||
		len(o.Env) != 2 || o.Labels["org.opencontainers.image.title"] != "vmdeb" || o.OutputMode() != 0o600 {
		t.Errorf("%+v (mode %v)", o, o.OutputMode())
	}
	// No tag: the config's name.
	s, err = Load(write(t, ociConfig("  - {type: oci, path: out/test.tar}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Outputs[0].ImageRef(s); got != "test-image" {
		t.Errorf("default image name %q, want test-image", got)
	}

	for yaml, want := range map[string]string{
		ociConfig("  - {type: oci, path: o.tar, tag: Vmdeb}\n"):                                                 `outputs[0].tag: "Vmdeb" is not an image name (valid: NAME or NAME:TAG`,
		ociConfig("  - {type: oci, path: o.tar, tag: 'vmdeb:a b'}\n"):                                           `outputs[0].tag: "vmdeb:a b" is not an image name`,
		ociConfig("  - {type: oci, path: o.tar, tag: 'vmdeb@sha256:00'}\n"):                                     "outputs[0].tag: \"vmdeb@sha256:00\": a digest",
		ociConfig("  - {type: oci, path: o.tar, cmd: ['', x]}\n"):                                               "outputs[0].cmd[0]: empty: the first item is the program to run",
		ociConfig("  - {type: oci, path: o.tar, entrypoint: ['']}\n"):                                           "outputs[0].entrypoint[0]: empty",
		ociConfig("  - {type: oci, path: o.tar, env: [FOO]}\n"):                                                 `outputs[0].env[0]: "FOO": write NAME=VALUE`,
		ociConfig("  - {type: oci, path: o.tar, env: [1X=a]}\n"):                                                `outputs[0].env[0]: "1X=a": write NAME=VALUE`,
		ociConfig("  - {type: oci, path: o.tar, env: [A=1, A=2]}\n"):                                            "outputs[0].env[1]: A is given twice",
		ociConfig("  - {type: oci, path: o.tar, labels: {'': x}}\n"):                                            "outputs[0].labels: a label has an empty name",
		ociConfig("  - {type: oci, path: o.tar, labels: {a: \"x\\ty\"}}\n"):                                     "outputs[0].labels.a: \"x\\ty\" contains a control character",
		ociConfig("  - {type: oci, path: o.tar, cmd: /bin/sh}\n"):                                               "expected a list, found a string (/bin/sh)",
		ociConfig("  - {type: oci, path: o.tar, size: 2G}\n"):                                                   "apply to disk outputs only",
		ociConfig("  - {type: oci, path: o.tar, format: qcow2}\n"):                                              "apply to disk outputs only",
		ociConfig("  - {type: oci, path: o.tar, compression: zstd}\n"):                                          "unknown key (valid keys here:",
		ociConfig("  - {type: tarball, path: o.tar, tag: x}\n"):                                                 "outputs[0]: tag, cmd, entrypoint, env and labels apply to oci outputs only (this output is tarball)",
		ociConfig("  - {type: directory, path: o, env: [A=1]}\n"):                                               "apply to oci outputs only",
		strings.Replace(ociConfig("  - {type: oci, path: o.tar}\n"), "name: test-image", "name: test+image", 1): `outputs[0].tag: missing, and the config's name "test+image" cannot name an image (lower case letters and digits, single . _ or - between them): give one, e.g. tag: test-image:latest`,
	} {
		p := write(t, yaml)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p+":") {
			t.Errorf("%s\ngot %v\nwant an error naming %s and %q", yaml, err, p, want)
		}
	}
}

// The oci keys are in vmdeb.yaml(5) with their defaults.
func TestOCIKeysDocumented(t *testing.T) {
	keys := map[string]Key{}
	for _, k := range Keys() {
		keys[k.Path] = k
	}
	for _, p := range []string{"outputs[].tag", "outputs[].cmd", "outputs[].entrypoint", "outputs[].env", "outputs[].labels"} {
		if k, ok := keys[p]; !ok || k.Default == "" || !strings.Contains(k.Text, "oci output") {
			t.Errorf("%s: %+v", p, k)
		}
	}
	if keys["outputs[].labels"].Type != "mapping of strings" {
		t.Errorf("labels' type: %q", keys["outputs[].labels"].Type)
	}
	if !strings.Contains(keys["outputs[].type"].Text, "oci (a container image") {
		t.Errorf("outputs[].type does not describe oci: %s", keys["outputs[].type"].Text)
	}
}
