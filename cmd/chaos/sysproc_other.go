//go:build !unix

package main

import (
	"os"
	"syscall"
)

// Without process groups or SIGTERM, every stop is a kill: the drills that
// need a graceful stop cannot show one here.
const (
	sigTerm = syscall.Signal(15)
	sigKill = syscall.Signal(9)
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }
