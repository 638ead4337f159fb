package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// prepare makes the repository ready to release version: every
// requirement of one of its modules on another names version, with a
// replace to the module's directory; every published module's Version
// constant is version (without the "v"). It then checks the result.
func (r *repo) prepare(version string) error {
	if !isReleaseVersion(version) {
		return fmt.Errorf("%q is not a version to release: want vMAJOR.MINOR.PATCH, optionally -PRERELEASE", version)
	}
	for _, m := range r.modules {
		changed := false
		for _, req := range m.file.Require {
			t := r.byPath(req.Mod.Path)
			if t == nil {
				continue
			}
			if req.Mod.Version != version {
				if err := m.file.AddRequire(t.path, version); err != nil {
					return err
				}
				changed = true
			}
			has := false
			for _, rep := range m.file.Replace {
				if rep.Old.Path == t.path && rep.Old.Version == "" && rep.New.Version == "" && replaceDir(rep.New.Path) == relDir(m, t) {
					has = true
				}
			}
			if !has {
				// Drops any other replace of the module (of one version,
				// or to another place) first.
				for _, rep := range m.file.Replace {
					if rep.Old.Path == t.path {
						if err := m.file.DropReplace(rep.Old.Path, rep.Old.Version); err != nil {
							return err
						}
					}
				}
				if err := m.file.AddReplace(t.path, "", relDir(m, t), ""); err != nil {
					return err
				}
				changed = true
			}
		}
		if changed {
			if err := r.write(m); err != nil {
				return err
			}
		}
		if m.published {
			if err := r.setVersionConst(m, strings.TrimPrefix(version, "v")); err != nil {
				return err
			}
		}
	}
	fresh, err := load(r.root)
	if err != nil {
		return err
	}
	*r = *fresh
	if problems := r.check(version); len(problems) > 0 {
		return fmt.Errorf("after prepare, still:\n\t%s", strings.Join(problems, "\n\t"))
	}
	return nil
}

// versionConst returns the value of the string constant Version in m's
// version.go, and that file's path relative to the repo root; file is ""
// when the module has no version.go.
func (r *repo) versionConst(m *mod) (value, file string, err error) {
	value, _, _, file, err = r.findVersionConst(m)
	return value, file, err
}

// setVersionConst rewrites the Version constant of m's version.go, if it
// has one.
func (r *repo) setVersionConst(m *mod, v string) error {
	old, start, end, file, err := r.findVersionConst(m)
	if err != nil || file == "" || old == v {
		return err
	}
	abs := filepath.Join(r.root, filepath.FromSlash(file))
	data, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	out := append(append(append([]byte(nil), data[:start]...), strconv.Quote(v)...), data[end:]...)
	return os.WriteFile(abs, out, 0o644)
}

// findVersionConst parses m's version.go for `const Version = "…"` and
// returns the value and the byte offsets of its literal.
func (r *repo) findVersionConst(m *mod) (value string, start, end int, file string, err error) {
	file = path.Join(m.dir, "version.go")
	abs := filepath.Join(r.root, filepath.FromSlash(file))
	data, err := os.ReadFile(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, 0, "", nil
	}
	if err != nil {
		return "", 0, 0, "", err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, abs, data, parser.SkipObjectResolution)
	if err != nil {
		return "", 0, 0, "", err
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != "Version" || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return "", 0, 0, "", fmt.Errorf("%s: Version must be a string literal", file)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					return "", 0, 0, "", fmt.Errorf("%s: %v", file, err)
				}
				return v, fset.Position(lit.Pos()).Offset, fset.Position(lit.End()).Offset, file, nil
			}
		}
	}
	return "", 0, 0, "", fmt.Errorf("%s: no const Version", file)
}

// tags returns the tags that release version, in the order to push them:
// the root module's first, so that no module's tag ever names a version
// of the core that does not exist yet, then the others by directory.
func (r *repo) tags(version string) []string {
	var out []string
	for _, m := range r.modules {
		if !m.published {
			continue
		}
		if m.dir == "." {
			out = append(out, version)
		} else {
			out = append(out, m.dir+"/"+version)
		}
	}
	return out
}
