package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Tool returns the absolute path of a command, looking in PATH and then in
// the sbin directories (root's PATH is not always complete), or name itself.
func Tool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// RequireTools fails (never skips) the test if a command is missing.
func RequireTools(t T, names ...string) {
	t.Helper()
	for _, n := range names {
		if !filepath.IsAbs(Tool(n)) {
			t.Fatalf("required tool %q not found; make deps-test installs the tools of the tests, make deps-bench those of the benchmark (Makefile)", n)
		}
	}
}

// Proc is a process started in a node's namespace. Its stdout and stderr go
// to LogPath in the lab directory (appended, one header per start), and the
// lab prints the tail of it when the test fails.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start starts name (a command looked up with Tool) with args inside the
// node's namespace and returns at once. The process dies with the test
// binary (PDEATHSIG) and is killed at teardown if still running.
func (n *Node) Start(label, name string, args ...string) *Proc {
	n.Lab.T.Helper()
	return n.StartCmd(Cmd{Label: label, Name: name, Args: args})
}

// StartEnv is Start with extra environment variables ("KEY=value").
func (n *Node) StartEnv(label string, env []string, name string, args ...string) *Proc {
	n.Lab.T.Helper()
	return n.StartCmd(Cmd{Label: label, Env: env, Name: name, Args: args})
}

// Cmd says how StartCmd starts a process.
type Cmd struct {
	Label string   // the process's name in messages and, by default, of its log
	Log   string   // the log file (appended to); default LAB_DIR/LABEL.log
	Env   []string // extra environment variables ("KEY=value")
	CPUs  string   // a CPU list for taskset -c (pins the process); "" runs it unpinned
	Name  string   // the command, looked up with Tool
	Args  []string
}

// StartCmd is Start with every option. "ip netns exec" and taskset exec the
// command in place, so the process's PID is the command's.
func (n *Node) StartCmd(c Cmd) *Proc {
	l := n.Lab
	l.T.Helper()
	logPath := c.Log
	if logPath == "" {
		logPath = filepath.Join(l.Dir, c.Label+".log")
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.T.Fatalf("%v", err)
	}
	defer f.Close()
	argv := []string{"netns", "exec", n.NS}
	if c.CPUs != "" {
		argv = append(argv, Tool("taskset"), "-c", c.CPUs)
	}
	argv = append(append(argv, Tool(c.Name)), c.Args...)
	fmt.Fprintf(f, "=== %s: ip %s\n", time.Now().Format("15:04:05.000"), strings.Join(argv, " "))
	cmd := exec.Command(Tool("ip"), argv...)
	cmd.Stdout, cmd.Stderr = f, f
	if c.Env != nil {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.T.Fatalf("starting %s in %s: %v", c.Name, n.NS, err)
	}
	p := &Proc{Name: c.Label, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p
}

// PID is the process id ("ip netns exec" execs the command in place).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process if it is still running.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return fmt.Errorf("%s (pid %d) has already exited: %v", p.Name, p.PID(), p.err)
	}
	return syscall.Kill(p.PID(), sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID(), timeout)
	}
}

// Stop sends SIGTERM and waits; if the process is still there after timeout
// it is killed and an error returned. A non-zero exit is also an error.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Running() {
		return p.err
	}
	syscall.Kill(p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		// SIGQUIT first: a Go program writes every goroutine's stack
		// to its log, which shows where the shutdown hangs.
		syscall.Kill(p.PID(), syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
			p.Kill()
		}
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was stopped with SIGQUIT (a Go program's goroutines are at the end of its log) or killed", p.Name, p.PID(), timeout)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	if p.Running() {
		syscall.Kill(p.PID(), syscall.SIGKILL)
	}
	<-p.done
}

// ExitCode returns the exit status after the process has exited (-1 if it
// was killed by a signal or is still running).
func (p *Proc) ExitCode() int {
	if p.Running() {
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// CPUTime is the user and system time the process used, once it has exited
// (0 while it runs). For a running process see CPUSeconds.
func (p *Proc) CPUTime() time.Duration {
	if p.Running() {
		return 0
	}
	st := p.cmd.ProcessState
	return st.UserTime() + st.SystemTime()
}

// Output returns everything the process logged since its last start.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	if i := bytes.LastIndex(b, []byte("\n=== ")); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}

// Tail returns the last n lines of the log (all starts).
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
