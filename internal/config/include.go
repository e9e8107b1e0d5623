package config

// Config composition: a config may include other config files, and
// overrides what they say.
//
//	include: base.yaml            # or a list: [base.yaml, amd64.yaml]
//
// The rules:
//   - Paths in include: are relative to the file that names them. The
//     included files are read in order, each on top of the one before,
//     and the including file on top of them all; an included file may
//     include others.
//   - Mappings (the top level, live:, root:, builder:) are merged key by
//     key: a key the including file gives replaces the included one,
//     a key it does not give keeps the included value.
//   - Lists (packages, users, outputs, ...) and single values are
//     replaced as a whole. KEY+: (packages+:, outputs+:, ...) appends
//     its items to the included list instead.
//   - A relative path in an included file (customise, keyring, live.splash,
//     custom-packages, outputs' path, ...) is relative to that file.
//   - Every error names the file and line that give the offending value;
//     a missing included file or an include cycle is reported at the
//     include: line that names it.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

var specType = reflect.TypeOf(Spec{})

// MaxIncludes bounds the files one config reads through include:.
const MaxIncludes = 64

// parser reads one config and the files it includes.
type parser struct {
	top, topDir string
	// fileOf is the file each node was read from.
	fileOf   map[*yaml.Node]string
	included []string
	reads    int
}

// load reads file (whose contents are data) and its includes, and
// returns the merged document. stack is the chain of files including it.
func (p *parser) load(data []byte, file string, stack []string) (*yaml.Node, error) {
	doc, err := readDoc(data, file)
	if err != nil {
		return nil, err
	}
	p.mark(doc, file)
	incs, err := takeIncludes(doc, file)
	if err != nil {
		return nil, err
	}
	var errs Errors
	checkKeys(doc, specType, "", func(string, *yaml.Node) {}, func(n *yaml.Node, key, msg string) {
		errs = append(errs, &Error{File: file, Line: n.Line, Key: key, Msg: msg})
	})
	if len(errs) > 0 {
		return nil, errs
	}
	if file != p.top {
		p.rebase(doc, filepath.Dir(file))
	}
	// Type errors are found file by file, so that they name the file.
	if err := decode(p.strip(doc), &Spec{}, file); err != nil {
		return nil, err
	}
	stack = append(stack, file)
	var base *yaml.Node
	for _, inc := range incs {
		path := inc.Value
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(file), path)
		}
		at := func(format string, a ...any) error {
			return &Error{File: file, Line: inc.Line, Key: "include", Msg: fmt.Sprintf(format, a...)}
		}
		if i := slices.Index(stack, path); i >= 0 {
			var chain []string
			for _, f := range append(stack[i:], path) {
				chain = append(chain, p.show(f))
			}
			return nil, at("include cycle: %s", strings.Join(chain, " includes "))
		}
		if p.reads++; p.reads > MaxIncludes {
			return nil, at("more than %d included files: not a config", MaxIncludes)
		}
		data, err := readIncluded(path)
		if err != nil {
			return nil, at("%s: %v", inc.Value, err)
		}
		if !slices.Contains(p.included, path) {
			p.included = append(p.included, path)
		}
		n, err := p.load(data, path, stack)
		if err != nil {
			return nil, err
		}
		base = p.overlay(base, n)
	}
	return p.overlay(base, doc), nil
}

// takeIncludes removes include: from doc and returns its file names.
func takeIncludes(doc *yaml.Node, file string) ([]*yaml.Node, error) {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], deref(doc.Content[i+1])
		if k.Value != "include" {
			continue
		}
		doc.Content = slices.Delete(slices.Clone(doc.Content), i, i+2)
		bad := &Error{File: file, Line: v.Line, Key: "include", Msg: "expected a file name or a list of file names (paths relative to this file)"}
		var names []*yaml.Node
		switch v.Kind {
		case yaml.ScalarNode:
			names = []*yaml.Node{v}
		case yaml.SequenceNode:
			for _, c := range v.Content {
				names = append(names, deref(c))
			}
		default:
			return nil, bad
		}
		for _, n := range names {
			if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
				bad.Line = n.Line
				return nil, bad
			}
		}
		for j := 0; j+1 < len(doc.Content); j += 2 {
			if doc.Content[j].Value == "include" {
				return nil, &Error{File: file, Line: doc.Content[j].Line, Key: "include", Msg: "given twice (list the files in one include:)"}
			}
		}
		return names, nil
	}
	return nil, nil
}

// readIncluded reads an included file: a regular file, a config's size.
func readIncluded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := readConfig(path)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "cannot read config: "))
	}
	return data, nil
}

// show is a file's name in a message: relative to the config's
// directory when under it.
func (p *parser) show(f string) string {
	if r, err := filepath.Rel(p.topDir, f); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return f
}

// mark records file as the origin of every node of n.
func (p *parser) mark(n *yaml.Node, file string) {
	if n == nil {
		return
	}
	if _, ok := p.fileOf[n]; ok {
		return
	}
	p.fileOf[n] = file
	p.mark(n.Alias, file)
	for _, c := range n.Content {
		p.mark(c, file)
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// clone is a shallow copy of n from the same file.
func (p *parser) clone(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = slices.Clone(n.Content)
	p.fileOf[&c] = p.fileOf[n]
	return &c
}

// overlay is over laid on base (nil: nothing): mappings merged key by
// key, KEY+ appending to base's list KEY, anything else replaced. A KEY+
// with nothing under it stays KEY+, to append to what the result is laid
// on in turn (strip makes it KEY at the end). It makes new nodes and
// changes neither tree.
func (p *parser) overlay(base, over *yaml.Node) *yaml.Node {
	base, over = deref(base), deref(over)
	switch over.Kind {
	case yaml.MappingNode:
		out := p.clone(over)
		out.Content = nil
		if base != nil && base.Kind == yaml.MappingNode {
			out.Content = slices.Clone(base.Content)
		}
		for i := 0; i+1 < len(over.Content); i += 2 {
			k, v := over.Content[i], over.Content[i+1]
			name, appends := strings.CutSuffix(k.Value, "+")
			j := -1
			for x := 0; x+1 < len(out.Content); x += 2 {
				if strings.TrimSuffix(out.Content[x].Value, "+") == name {
					j = x
				}
			}
			if j < 0 {
				out.Content = append(out.Content, k, p.overlay(nil, v))
				continue
			}
			old := deref(out.Content[j+1])
			nv := p.overlay(old, v)
			if appends && old.Kind == yaml.SequenceNode && nv.Kind == yaml.SequenceNode {
				nv.Content = append(slices.Clone(old.Content), nv.Content...)
				// Still an append if what it appended to was one.
				k = p.clone(k)
				k.Value = out.Content[j].Value
			}
			out.Content[j], out.Content[j+1] = k, nv
		}
		return out
	case yaml.SequenceNode:
		out := p.clone(over)
		for i, c := range out.Content {
			out.Content[i] = p.overlay(nil, c)
		}
		return out
	}
	return over
}

// strip is n with every KEY+ made KEY: once everything is laid on
// everything, an append with nothing under it is the list itself.
func (p *parser) strip(n *yaml.Node) *yaml.Node {
	n = deref(n)
	if n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode {
		return n
	}
	out := p.clone(n)
	for i, c := range out.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			if name, ok := strings.CutSuffix(c.Value, "+"); ok {
				out.Content[i] = p.clone(c)
				out.Content[i].Value = name
			}
			continue
		}
		out.Content[i] = p.strip(c)
	}
	return out
}

// pathKeys are the keys whose values are paths relative to the config
// file: "[]" marks a list of them, "outputs[].path" a key of each item.
var pathKeys = []string{"binfmt-handler", "apt-auth", "keyring", "cache", "customise", "custom-packages[]", "live.splash", "outputs[].path", "outputs[].image-hook"}

// rebase rewrites the relative paths of an included file's doc (read
// from dir) relative to the including config's directory, so that they
// name the same files.
func (p *parser) rebase(doc *yaml.Node, dir string) {
	rel := func(v *yaml.Node) *yaml.Node {
		v = deref(v)
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" || filepath.IsAbs(v.Value) {
			return v
		}
		n := p.clone(v)
		n.Value = filepath.Join(dir, v.Value)
		if r, err := filepath.Rel(p.topDir, n.Value); err == nil {
			n.Value = r
		}
		return n
	}
	var walk func(n *yaml.Node, path string) *yaml.Node
	walk = func(n *yaml.Node, path string) *yaml.Node {
		n = deref(n)
		switch {
		case slices.Contains(pathKeys, path):
			return rel(n)
		case n.Kind == yaml.SequenceNode && slices.ContainsFunc(pathKeys, func(k string) bool { return strings.HasPrefix(k, path+"[]") }):
			n = p.clone(n)
			for i, c := range n.Content {
				n.Content[i] = walk(c, path+"[]")
			}
		case n.Kind == yaml.MappingNode && slices.ContainsFunc(pathKeys, func(k string) bool { return path == "" || strings.HasPrefix(k, path+".") }):
			n = p.clone(n)
			for i := 0; i+1 < len(n.Content); i += 2 {
				name := strings.TrimSuffix(n.Content[i].Value, "+")
				n.Content[i+1] = walk(n.Content[i+1], join(path, name))
			}
		}
		return n
	}
	doc.Content = walk(doc, "").Content
}
