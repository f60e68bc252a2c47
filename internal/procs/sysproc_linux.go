package procs

import "syscall"

// sysProcAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches only the parent, which stops the children itself) and has the
// kernel kill it should the parent die without cleaning up. SIGKILL, not
// SIGTERM: a child that a stray SIGTERM stops exits 0, one that lost its
// parent shows "signal: killed".
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
