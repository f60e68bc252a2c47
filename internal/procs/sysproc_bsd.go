//go:build unix && !linux

package procs

import "syscall"

// sysProcAttr puts a child in its own process group: a terminal's Ctrl-C
// reaches only the parent, which stops the children itself.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
