//go:build !unix

package procs

import (
	"os"
	"syscall"
)

// Without process groups or SIGTERM, every stop is a kill: a graceful stop
// cannot be shown here.
const (
	sigTerm = syscall.Signal(15)
	sigKill = syscall.Signal(9)
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }
