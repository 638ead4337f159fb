// Command release keeps the repository's Go modules releasable together,
// as RELEASING.md describes. Every module is found by scanning for go.mod
// files; the root module and those under contrib/ are published, each
// with its own tag.
//
//	go run ./tools/release check [VERSION]   what is not ready to release VERSION
//	go run ./tools/release prepare VERSION   set every in-repo requirement (and Version constant) to VERSION
//	go run ./tools/release tags VERSION      the tags that release VERSION, in the order to push them
//	go run ./tools/release modules           every module: directory, path, published or not
//	go run ./tools/release shared            regenerate the copies of shared internal packages
//	go run ./tools/release proxy -o DIR VERSION
//	                                         a file-based module proxy serving the published modules at VERSION
//
// -C DIR names the repository's root; by default the nearest directory
// upward with a go.work.
//
// Exit status: 0 when all is well, 1 when check finds problems (one a
// line), 2 on a usage error or a failure.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: release [-C DIR] check [VERSION] | prepare VERSION | tags VERSION | modules | shared | proxy -o DIR VERSION`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("C", "", "the repository's root (default: the nearest directory upward with a go.work)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "release:", err)
		return 2
	}
	if *root == "" {
		var err error
		if *root, err = findRoot(); err != nil {
			return fail(err)
		}
	}
	r, err := load(*root)
	if err != nil {
		return fail(err)
	}
	cmd, args := args[0], args[1:]
	version := func() (string, bool) {
		if len(args) != 1 {
			fmt.Fprintf(stderr, "release %s: want one VERSION\n%s\n", cmd, usage)
			return "", false
		}
		return args[0], true
	}
	switch cmd {
	case "check":
		if len(args) > 1 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		v := ""
		if len(args) == 1 {
			v = args[0]
		}
		problems := r.check(v)
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		if len(problems) > 0 {
			return 1
		}
		if v == "" {
			v = r.currentVersion()
		}
		fmt.Fprintf(stdout, "%d modules, ready to release %s\n", len(r.modules), v)
	case "prepare":
		v, ok := version()
		if !ok {
			return 2
		}
		if err := r.prepare(v); err != nil {
			return fail(err)
		}
	case "tags":
		v, ok := version()
		if !ok {
			return 2
		}
		if problems := r.check(v); len(problems) > 0 {
			return fail(fmt.Errorf("not ready to release %s:\n\t%s", v, strings.Join(problems, "\n\t")))
		}
		for _, t := range r.tags(v) {
			fmt.Fprintln(stdout, t)
		}
	case "modules":
		for _, m := range r.modules {
			state := "unpublished"
			if m.published {
				state = "published"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", m.dir, m.path, state)
		}
	case "shared":
		if len(args) != 0 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		written, err := r.syncShared(true)
		if err != nil {
			return fail(err)
		}
		for _, f := range written {
			fmt.Fprintln(stdout, "wrote", f)
		}
	case "proxy":
		pfs := flag.NewFlagSet("release proxy", flag.ContinueOnError)
		pfs.SetOutput(stderr)
		out := pfs.String("o", "", "the proxy's directory")
		if err := pfs.Parse(args); err != nil {
			return 2
		}
		args = pfs.Args()
		v, ok := version()
		if !ok {
			return 2
		}
		if *out == "" {
			fmt.Fprintln(stderr, "release proxy: -o DIR is required")
			return 2
		}
		if err := r.writeProxy(*out, v); err != nil {
			return fail(err)
		}
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	return 0
}

// findRoot returns the nearest directory upward from the working directory
// that holds a go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work in this directory or above it: give the repository's root with -C")
		}
		dir = parent
	}
}
