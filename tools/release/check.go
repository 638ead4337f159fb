package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// check returns every way the repository is not ready to release version
// (or, for version "", not consistent with itself): each problem a line
// that names the file.
//
// The rules, and why:
//   - Every module is in go.work, so that the workspace's tests see it,
//     and go.work states the root module's go version, the one the README
//     promises.
//   - A module that requires another of the repository's modules requires
//     it at the version being released: a consumer's build ignores the
//     replace directives, so what a published go.mod requires is what the
//     consumer gets. Without a version given, all of them agree on one.
//   - Each such requirement has a replace to the module's directory, so
//     that the module also builds and tests alone (GOWORK=off) against the
//     code beside it, not against a released version.
//   - A published module replaces nothing else, and requires no module of
//     the repository that is not published: its consumers could build
//     neither.
//   - A published module's Version constant (version.go) is the version.
//   - No module imports another module's internal packages (which that
//     module may change in any release), and the copies of shared internal
//     packages are what the source makes.
func (r *repo) check(version string) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if version != "" && !isReleaseVersion(version) {
		add("%q is not a version to release: want vMAJOR.MINOR.PATCH, optionally -PRERELEASE", version)
		return problems
	}

	// go.work
	if r.work == nil {
		add("go.work: missing")
	} else {
		used := map[string]bool{}
		for _, u := range r.work.Use {
			used[replaceDir(u.Path)] = true
		}
		for _, m := range r.modules {
			if !used[replaceDir(m.dir)] {
				add("go.work: does not use %s (module %s)", m.dir, m.path)
			}
			delete(used, replaceDir(m.dir))
		}
		for _, u := range sortedKeys(used) {
			add("go.work: uses %s, which has no go.mod", u)
		}
		if core := r.core(); r.work.Go == nil || core.file.Go == nil || r.work.Go.Version != core.file.Go.Version {
			add("go.work: go %s, but the root go.mod says go %s: the README promises one version", goVersion(r.work.Go), goVersion(core.file.Go))
		}
	}

	// Requirements between the repository's modules.
	versions := map[string][]string{} // version -> where it was seen
	for _, m := range r.modules {
		modFile := path.Join(m.dir, "go.mod")
		replaces := map[string]string{} // old path -> new directory, for version-less replaces of a directory
		for _, rep := range m.file.Replace {
			isDir := rep.New.Version == "" && (strings.HasPrefix(rep.New.Path, ".") || path.IsAbs(rep.New.Path))
			t := r.byPath(rep.Old.Path)
			switch {
			case t == nil && m.published:
				add("%s: replaces %s: a published module's consumers ignore its replace directives, so it must build without them", modFile, rep.Old.Path)
			case t == nil:
				// the repository's own modules may replace what they like
			case rep.Old.Version != "" || !isDir:
				add("%s: replaces %s %s => %s %s: want every version replaced by its directory, %s", modFile, rep.Old.Path, rep.Old.Version, rep.New.Path, rep.New.Version, relDir(m, t))
			default:
				replaces[rep.Old.Path] = replaceDir(rep.New.Path)
			}
		}
		for _, req := range m.file.Require {
			t := r.byPath(req.Mod.Path)
			if t == nil {
				continue
			}
			versions[req.Mod.Version] = append(versions[req.Mod.Version], modFile)
			if version != "" && req.Mod.Version != version {
				add("%s: requires %s %s, want %s", modFile, req.Mod.Path, req.Mod.Version, version)
			}
			if m.published && !t.published {
				add("%s: requires %s, which is not published: consumers could not get it", modFile, t.path)
			}
			if dir, ok := replaces[t.path]; !ok {
				add("%s: requires %s with no replace => %s: GOWORK=off builds would use a released version, not the code beside it", modFile, t.path, relDir(m, t))
			} else if dir != relDir(m, t) {
				add("%s: replaces %s => %s, but the module is in %s", modFile, t.path, dir, relDir(m, t))
			}
		}
	}

	// Version constants.
	for _, m := range r.modules {
		if !m.published {
			continue
		}
		v, file, err := r.versionConst(m)
		switch {
		case err != nil:
			add("%s", err)
		case file == "":
		default:
			versions["v"+v] = append(versions["v"+v], file)
			if version != "" && "v"+v != version {
				add("%s: Version = %q, want %q", file, v, strings.TrimPrefix(version, "v"))
			}
		}
	}

	if version == "" {
		switch len(versions) {
		case 0:
		case 1:
			for v, where := range versions {
				if !isReleaseVersion(v) {
					add("%s: %s is not a version to release", strings.Join(where, ", "), v)
				}
			}
		default:
			var seen []string
			for _, v := range sortedKeys(versions) {
				seen = append(seen, fmt.Sprintf("%s (%s)", v, strings.Join(versions[v], ", ")))
			}
			add("the modules name different versions of each other: %s; run: go run ./tools/release prepare VERSION", strings.Join(seen, "; "))
		}
	}

	for _, p := range r.internalImports() {
		add("%s", p)
	}

	stale, err := r.syncShared(false)
	if err != nil {
		add("%s", err)
	}
	for _, f := range stale {
		add("%s: differs from what its source makes; run: go run ./tools/release shared", f)
	}
	return problems
}

// isReleaseVersion accepts vMAJOR.MINOR.PATCH with an optional
// -PRERELEASE, in canonical form; build metadata (+…) is refused, since
// the go command drops it.
func isReleaseVersion(v string) bool {
	return semver.IsValid(v) && semver.Canonical(v) == v && semver.Build(v) == ""
}

// currentVersion is the one version the modules name of each other, or "".
func (r *repo) currentVersion() string {
	for _, m := range r.modules {
		for _, req := range m.file.Require {
			if r.byPath(req.Mod.Path) != nil {
				return req.Mod.Version
			}
		}
	}
	return ""
}

func goVersion(g *modfile.Go) string {
	if g == nil {
		return "(none)"
	}
	return g.Version
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// internalImports returns a problem for each import, in any Go file of a
// module (tests included), of an internal package of another of the
// repository's modules: the go command allows it (the import paths share
// a prefix) but it ties the module to internals of whatever version of the
// other module a consumer builds with.
func (r *repo) internalImports() []string {
	var problems []string
	for _, m := range r.modules {
		for _, file := range r.goFiles(m) {
			abs := filepath.Join(r.root, filepath.FromSlash(file))
			f, err := parser.ParseFile(token.NewFileSet(), abs, nil, parser.ImportsOnly)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", file, err))
				continue
			}
			for _, imp := range f.Imports {
				p, err := strconv.Unquote(imp.Path.Value)
				if err != nil {
					continue
				}
				if owner := r.owner(p); owner != nil && owner != m && isInternal(strings.TrimPrefix(p, owner.path)) {
					problems = append(problems, fmt.Sprintf("%s: imports %s, an internal package of module %s: export what is needed, or copy it (tools/release shared)", file, p, owner.path))
				}
			}
		}
	}
	return problems
}

// owner returns the repository's module that provides package path p: the
// one with the longest module path that is p or a prefix of it.
func (r *repo) owner(p string) *mod {
	var best *mod
	for _, m := range r.modules {
		if (p == m.path || strings.HasPrefix(p, m.path+"/")) && (best == nil || len(m.path) > len(best.path)) {
			best = m
		}
	}
	return best
}

// isInternal says whether a package path within a module (rest, "" or
// starting with "/") has an internal element.
func isInternal(rest string) bool {
	return slices.Contains(strings.Split(rest, "/"), "internal")
}

// goFiles returns the Go files of m, relative to the repo root, skipping
// nested modules and what the go command skips.
func (r *repo) goFiles(m *mod) []string {
	modRoot := filepath.Join(r.root, filepath.FromSlash(m.dir))
	var files []string
	_ = filepath.WalkDir(modRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if p != modRoot {
				if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".go") {
			rel, err := filepath.Rel(r.root, p)
			if err == nil {
				files = append(files, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	return files
}
