package args

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		line, wantErr string
		n             int
	}{
		{line: "a=1 b=2 p=x p=y", n: 4},
		{line: "a=1 a=2", wantErr: `argument "a=2": a is already set by "a=1"`},
		{line: "a", wantErr: `argument "a": want key=value`},
		{line: "=1", wantErr: `argument "=1": want key=value`},
		{line: "a=", wantErr: `argument "a=": empty value`},
		{line: "a=b=c", n: 1},
	} {
		words, seen, err := Split(strings.Fields(tc.line), "p")
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Split(%q) error = %v, want %q", tc.line, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(words) != tc.n {
			t.Errorf("Split(%q) = %v, %v", tc.line, words, err)
		}
		if tc.line == "a=b=c" && (words[0].Value != "b=c" || seen["a"] != "a=b=c") {
			t.Errorf("Split(%q) = %+v, %v", tc.line, words, seen)
		}
	}
}
