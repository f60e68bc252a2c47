//go:build !unix

package main

import (
	"os"
	"syscall"
)

// sysProcAttr: no process groups here; the demo stops its children itself.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate: no SIGTERM here; the child is killed.
func terminate(p *os.Process) error { return p.Kill() }

func kill(p *os.Process) error { return p.Kill() }
