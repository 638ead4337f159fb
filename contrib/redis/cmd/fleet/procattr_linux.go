package main

import "syscall"

// dieWithParent makes a child process get SIGKILL when the experiment
// dies, however it dies, so that no redis-server outlives it.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
