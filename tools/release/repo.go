package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
)

// A repo is the repository's modules, found by scanning for go.mod files,
// and its go.work.
type repo struct {
	root    string // absolute
	modules []*mod // the root module first, then by directory
	work    *modfile.WorkFile
}

// A mod is one module (one go.mod) of the repository.
type mod struct {
	dir  string // slash-separated, relative to the repo root; "." for the root
	path string // the module path
	file *modfile.File
	// published modules get a tag at each release and are what consumers
	// require: the root module and every module under contrib/. The others
	// (benchmarks, tools) are the repository's own.
	published bool
}

// isPublished says whether the module in dir (relative, slash-separated)
// is released. Decision: a rule on the directory, not a list, so that a
// new contrib module is released without a change here.
func isPublished(dir string) bool {
	return dir == "." || strings.HasPrefix(dir, "contrib/")
}

// load reads every go.mod under root, skipping what the go command skips
// (testdata, vendor, directories starting with "." or "_"), and go.work.
func load(root string) (*repo, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	r := &repo{root: root}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() != "go.mod" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := modfile.Parse(p, data, nil)
		if err != nil {
			return err
		}
		if f.Module == nil {
			return fmt.Errorf("%s: no module line", p)
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		r.modules = append(r.modules, &mod{dir: dir, path: f.Module.Mod.Path, file: f, published: isPublished(dir)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(r.modules, func(a, b *mod) int { return strings.Compare(a.dir, b.dir) }) // "." first
	if len(r.modules) == 0 || r.modules[0].dir != "." {
		return nil, fmt.Errorf("%s: no go.mod at the root", root)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.work"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// check reports it
	case err != nil:
		return nil, err
	default:
		if r.work, err = modfile.ParseWork(filepath.Join(root, "go.work"), data, nil); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// core is the root module.
func (r *repo) core() *mod { return r.modules[0] }

// byPath returns the repository's module of a module path, or nil.
func (r *repo) byPath(p string) *mod {
	for _, m := range r.modules {
		if m.path == p {
			return m
		}
	}
	return nil
}

// relDir is the directory of to as a replace directive in from's go.mod
// names it: "../..", "../redis", "./contrib/redis".
func relDir(from, to *mod) string {
	rel, err := filepath.Rel(filepath.FromSlash(from.dir), filepath.FromSlash(to.dir))
	if err != nil {
		panic(err) // both are relative to one root
	}
	return replaceDir(filepath.ToSlash(rel))
}

// replaceDir normalises a directory of a replace directive, so that two
// spellings of one directory compare equal: cleaned, and "./" before a
// relative path that does not start with "..".
func replaceDir(p string) string {
	c := path.Clean(p)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return c
	}
	return "./" + strings.TrimPrefix(c, "./")
}

// write formats and writes m's go.mod.
func (r *repo) write(m *mod) error {
	m.file.Cleanup()
	data, err := m.file.Format()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.root, filepath.FromSlash(m.dir), "go.mod"), data, 0o644)
}
