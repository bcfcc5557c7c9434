package leasesync

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// reachableSockets lists the sockets under dir that a user other than
// the owner could connect to (write permission on the socket and search
// permission on every directory below dir), taking dir itself as open.
func reachableSockets(t *testing.T, dir string) []string {
	t.Helper()
	var open []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed meanwhile
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		switch {
		case fi.IsDir() && p != dir && fi.Mode().Perm()&0o011 == 0:
			return filepath.SkipDir // closed to others
		case fi.Mode()&fs.ModeSocket != 0 && fi.Mode().Perm()&0o022 != 0:
			open = append(open, p+" "+fi.Mode().String())
		}
		return nil
	})
	return open
}

// Issue 15 (suspicion): the control socket was created with the mode the
// umask allows and chmodded to 0600 only afterwards; in a directory that
// others may enter, they could connect in between. At every step of
// listenControl, with the loosest umask and a 0777 directory, no socket is
// open to others; the socket ends up 0600, answers, and is gone after
// Close with nothing left behind.
func TestControlSocketIsNeverOpenToOthers(t *testing.T) {
	old := syscall.Umask(0) // sockets are created 0777
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lan1.sock")
	steps := 0
	controlStep = func() {
		steps++
		if open := reachableSockets(t, dir); len(open) > 0 {
			t.Errorf("After step %d of listenControl others may connect to %v", steps, open)
		}
	}
	defer func() { controlStep = nil }()
	ln, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	if steps == 0 {
		t.Fatal("listenControl reported no step")
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Control socket: %v, %v; want a socket of mode 0600", fi, err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("Dialling the control socket: %v", err)
	}
	c.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("Left behind after Close: %v", left)
	}
}

// A path that exists and is not a socket is not replaced.
func TestControlSocketDoesNotReplaceAFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lan1.sock")
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := listenControl(path); err == nil {
		ln.Close()
		t.Fatal("listenControl over a regular file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Fatalf("The file is now %q, %v", b, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Fatalf("Left behind: %v", left)
	}
}
