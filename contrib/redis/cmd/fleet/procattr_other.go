//go:build !linux

package main

import "syscall"

// dieWithParent is Linux's Pdeathsig elsewhere: nothing.
func dieWithParent() *syscall.SysProcAttr { return nil }
