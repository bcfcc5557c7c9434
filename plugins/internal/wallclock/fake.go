//go:build fakeclock

package wallclock

import (
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coredhcp/coredhcp/logger"
)

// OffsetFileEnv names the environment variable that holds the path of the
// offset file: one Go duration ("30s", "-2m"). The server reads it at
// start and again on every SIGUSR2.
const OffsetFileEnv = "COREDHCP_FAILOVER_FAKECLOCK"

var off atomic.Int64

func offset() time.Duration { return time.Duration(off.Load()) }

func init() {
	path := os.Getenv(OffsetFileEnv)
	if path == "" {
		return
	}
	log := logger.GetLogger("plugins/wallclock")
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			log.Errorf("fake clock: %v", err)
			return
		}
		d := time.Duration(0)
		if s := strings.TrimSpace(string(b)); s != "" {
			if d, err = time.ParseDuration(s); err != nil {
				log.Errorf("fake clock: %s: %v", path, err)
				return
			}
		}
		if old := time.Duration(off.Swap(int64(d))); old != d {
			log.Warnf("fake clock stepped by %v: now %v off the real clock", d-old, d)
		}
	}
	read()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	go func() {
		for range ch {
			read()
		}
	}()
}
