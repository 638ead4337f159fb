package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// writeProxy lays out, under dir, a module proxy that serves every
// published module at version, as GOPROXY=file://dir reads it (the
// GOPROXY protocol of "go help goproxy": <module>/@v/list, .info, .mod,
// .zip). The zips are made by golang.org/x/mod/zip, as the go command
// makes them, from each module's directory: every file in it, less
// nested modules, vendor directories and VCS directories. So run it on a
// clean copy of the repository (.ci/consumer copies the files git knows).
func (r *repo) writeProxy(dir, version string) error {
	if !isReleaseVersion(version) {
		return fmt.Errorf("%q is not a version to release", version)
	}
	for _, m := range r.modules {
		if !m.published {
			continue
		}
		mv := module.Version{Path: m.path, Version: version}
		escPath, err := module.EscapePath(m.path)
		if err != nil {
			return err
		}
		escVer, err := module.EscapeVersion(version)
		if err != nil {
			return err
		}
		vdir := filepath.Join(dir, filepath.FromSlash(escPath), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		base := filepath.Join(vdir, escVer)

		modDir := filepath.Join(r.root, filepath.FromSlash(m.dir))
		gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
			return err
		}
		info, err := json.Marshal(struct {
			Version string
			Time    time.Time
		}{version, time.Now().UTC().Truncate(time.Second)})
		if err != nil {
			return err
		}
		if err := os.WriteFile(base+".info", info, 0o644); err != nil {
			return err
		}
		if err := writeZip(base+".zip", mv, modDir); err != nil {
			return err
		}
		if err := addToList(filepath.Join(vdir, "list"), version); err != nil {
			return err
		}
	}
	return nil
}

func writeZip(file string, mv module.Version, dir string) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := zip.CreateFromDir(f, mv, dir); err != nil {
		return fmt.Errorf("%s: %w", mv, err)
	}
	return nil
}

// addToList adds version to a proxy's list file, once.
func addToList(file, version string) error {
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	versions := strings.Fields(string(data))
	if !slices.Contains(versions, version) {
		versions = append(versions, version)
	}
	return os.WriteFile(file, []byte(strings.Join(versions, "\n")+"\n"), 0o644)
}
