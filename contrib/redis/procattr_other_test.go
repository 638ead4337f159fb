//go:build !linux

package redis

import "syscall"

// dieWithParent is Linux's Pdeathsig elsewhere: nothing.
func dieWithParent() *syscall.SysProcAttr { return nil }
