package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// output is a file the command writes after the run (-report, -json).
//
// Decision: a temporary file is created next to it before the run starts,
// so that a path that cannot be written is reported at once rather than
// after the run; it is renamed over the path once written whole, so that
// a failed or interrupted write leaves any earlier file as it was.
type output struct {
	path string
	tmp  *os.File // nil once committed or discarded
}

func createOutput(path string) (*output, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("cannot write %s: it is a directory", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	return &output{path: path, tmp: tmp}, nil
}

// commit writes the file with write and puts it in place.
func (o *output) commit(write func(io.Writer) error) error {
	if err := write(o.tmp); err != nil {
		return err
	}
	if err := o.tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := o.tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(o.tmp.Name(), o.path); err != nil {
		return err
	}
	o.tmp = nil
	return nil
}

// discard removes the temporary file, unless it was committed.
func (o *output) discard() {
	if o.tmp != nil {
		o.tmp.Close()
		os.Remove(o.tmp.Name())
		o.tmp = nil
	}
}
