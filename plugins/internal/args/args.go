// Package args splits a plugin line's key=value words, for the plugins'
// parsers: it rejects malformed words, empty values and repeated keys
// (except those allowed to repeat), naming the word in each error.
package args

import (
	"fmt"
	"strings"
)

// Word is one key=value argument.
type Word struct {
	Key, Value string
	// Text is the whole word, as the operator wrote it.
	Text string
}

// Error names the offending word and the rule it broke.
func Error(word, format string, a ...any) error {
	return fmt.Errorf("argument %q: %s", word, fmt.Sprintf(format, a...))
}

// Split reads key=value words. repeatable lists the keys that may appear
// more than once. The returned map gives, for each key seen, its first
// word (for errors that concern a key rather than a word).
func Split(words []string, repeatable ...string) ([]Word, map[string]string, error) {
	out := make([]Word, 0, len(words))
	seen := map[string]string{}
	for _, w := range words {
		key, val, ok := strings.Cut(w, "=")
		if !ok || key == "" {
			return nil, nil, Error(w, "want key=value")
		}
		if val == "" {
			return nil, nil, Error(w, "empty value")
		}
		if prev, dup := seen[key]; dup && !contains(repeatable, key) {
			return nil, nil, Error(w, "%s is already set by %q", key, prev)
		}
		if _, dup := seen[key]; !dup {
			seen[key] = w
		}
		out = append(out, Word{Key: key, Value: val, Text: w})
	}
	return out, seen, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
