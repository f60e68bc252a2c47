//go:build unix && !linux

package main

import "syscall"

// sysProcAttr puts a child in its own process group: a terminal's Ctrl-C
// reaches only chaos, which stops the children itself.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
