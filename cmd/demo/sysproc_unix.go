//go:build unix

package main

import (
	"os"
	"syscall"
)

// signalGroup sends sig to p's process group (each child leads its own, see
// sysProcAttr), so whatever p started goes too; failing that, to p alone.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err == nil {
		return nil
	}
	return p.Signal(sig)
}

func terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

func kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }
