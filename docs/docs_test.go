package docs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The repository's documentation must stand on its own: every document a
// comment, README or test data file cites is in the repository, and every
// section or invariant it cites exists. These tests read every tracked
// text file once (well under a second).

// scanned reports whether a tracked file is text that may cite documents.
func scanned(name string) bool {
	switch path.Ext(name) {
	case ".go", ".md", ".txt", ".hex", ".yaml", ".yml", ".sh", ".service", ".template":
		return true
	}
	return path.Base(name) == "Makefile"
}

type file struct {
	name string // slash-separated, relative to the repository root
	text string
}

// repo is the set of tracked files, and the text of those scanned.
type repo struct {
	tracked map[string]bool
	dirs    map[string]bool
	files   []file
}

var (
	loadOnce sync.Once
	loaded   *repo
	loadErr  error
)

// loadRepo reads the repository once for all the tests.
func loadRepo(t *testing.T) *repo {
	t.Helper()
	loadOnce.Do(func() { loaded, loadErr = readRepo("..") })
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return loaded
}

var errNoGit = errors.New("git ls-files failed: not a git checkout?")

func readRepo(root string) (*repo, error) {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", errNoGit, err)
	}
	r := &repo{tracked: map[string]bool{}, dirs: map[string]bool{}}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(name))); err != nil {
			continue // deleted in the work tree, not yet committed
		}
		r.tracked[name] = true
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			r.dirs[d] = true
		}
		if !scanned(name) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			continue
		}
		r.files = append(r.files, file{name, string(b)})
	}
	return r, nil
}

// resolve finds the tracked file a reference from file `from` names:
// relative to the citing file's directory, else to the repository root.
func (r *repo) resolve(from, ref string) (string, bool) {
	ref = strings.TrimPrefix(ref, "./")
	for _, p := range []string{path.Join(path.Dir(from), ref), path.Clean(ref)} {
		if r.tracked[p] || r.dirs[p] {
			return p, true
		}
	}
	return "", false
}

// lineOf is the 1-based line of offset i in s.
func lineOf(s string, i int) int { return strings.Count(s[:i], "\n") + 1 }

// upward is a relative path that climbs directories: it must stay in
// the repository.
var upward = regexp.MustCompile(`(?:\.\./)+[A-Za-z0-9_.-]+`)

// absolute is an absolute path of two parts or more, at the start of a
// word.
var absolute = regexp.MustCompile(`(?:^|[\s("'` + "`" + `\[=])(/[a-z0-9_-]+/[A-Za-z0-9_./-]*)`)

// system are the top directories of the machine the project runs on:
// the paths it installs to and reads. Any other absolute path names a
// place on the machine a text was written on.
var system = map[string]bool{"etc": true, "var": true, "usr": true, "run": true, "tmp": true, "dev": true,
	"proc": true, "sys": true, "lib": true, "bin": true, "sbin": true, "opt": true, "srv": true}

// TestNothingCitesDocumentsOutsideTheRepository: beside the cited
// documents and sections (the tests below), the prose of the repository
// names no path outside it: no relative path that climbs above its root,
// no absolute path outside the machine's system directories.
func TestNothingCitesDocumentsOutsideTheRepository(t *testing.T) {
	r := loadRepo(t)
	for _, f := range r.files {
		text := prose(f)
		for _, m := range upward.FindAllStringIndex(text, -1) {
			if p := path.Join(path.Dir(f.name), text[m[0]:m[1]]); p == ".." || strings.HasPrefix(p, "../") {
				t.Errorf("%s:%d: %q leaves the repository; cite what is in it (docs/)", f.name, lineOf(text, m[0]), text[m[0]:m[1]])
			}
		}
		for _, m := range absolute.FindAllStringSubmatchIndex(text, -1) {
			p := text[m[2]:m[3]]
			if top := strings.SplitN(p[1:], "/", 2)[0]; !system[top] {
				t.Errorf("%s:%d: %q is a path of another machine; cite what is in the repository (docs/)", f.name, lineOf(text, m[2]), p)
			}
		}
	}
}

// mdRef is a path ending in .md, as written in text or a Markdown link.
var mdRef = regexp.MustCompile(`[A-Za-z0-9_.~/:-]*[A-Za-z0-9_-]\.md\b`)

// prose is the part of a file that may cite documents: all of a Markdown
// or text file, the comments of a Go file (its strings name files it
// writes or installs), nothing of the build and install scripts.
func prose(f file) string {
	switch path.Ext(f.name) {
	case ".md", ".txt":
		return f.text
	case ".go":
	default:
		return ""
	}
	lines := strings.SplitAfter(f.text, "\n")
	for i, l := range lines {
		c := strings.Index(l, "//")
		if c < 0 || strings.Count(l[:c], "\"")%2 == 1 || strings.Count(l[:c], "`")%2 == 1 {
			c = len(l) // no comment, or "//" inside a string
		}
		if c == len(l) && strings.HasSuffix(l, "\n") {
			c-- // keep the line break, so that line numbers hold
		}
		lines[i] = strings.Repeat(" ", c) + l[c:]
	}
	return strings.Join(lines, "")
}

func TestCitedMarkdownFilesExist(t *testing.T) {
	r := loadRepo(t)
	for _, f := range r.files {
		text := prose(f)
		for _, m := range mdRef.FindAllStringIndex(text, -1) {
			ref := text[m[0]:m[1]]
			if strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
				continue // a URL or an absolute path: not a file of the repository
			}
			if _, ok := r.resolve(f.name, ref); !ok {
				t.Errorf("%s:%d: cites %s, which is not in the repository", f.name, lineOf(text, m[0]), ref)
			}
		}
	}
}

// section is a citation of a numbered section: § and a number.
var section = regexp.MustCompile(`§\s?(\d+(?:\.\d+)*)`)

// citationRun is what may stand between a document's name and the
// sections cited from it: "docs/protocol.md §12.3, §12.5 and §16".
var citationRun = regexp.MustCompile(`(?:[\s,;(]|and|or|§\s?\d+(?:\.\d+)*|–|-)*$`)

// anchor is a document named just before a run of section citations:
// a Markdown file, a draft or an RFC.
var anchor = regexp.MustCompile(`(?:([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md)|draft-12|draft-ietf-dhc-failover-12|the draft|RFC ?\d+)[` + "`" + `*)]*$`)

// headings are the numbered sections of a Markdown document: "## 6.7 BNDUPD".
var heading = regexp.MustCompile(`(?m)^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s`)

func (r *repo) sections(name string) map[string]bool {
	for _, f := range r.files {
		if f.name == name {
			s := map[string]bool{}
			for _, m := range heading.FindAllStringSubmatch(f.text, -1) {
				s[m[1]] = true
			}
			return s
		}
	}
	return nil
}

// flatten joins the lines of a comment or paragraph: comment markers and
// line breaks become single spaces, so that a citation broken over two
// lines reads as one. at maps each byte of the result to the original.
func flatten(s string) (flat string, at []int) {
	var b strings.Builder
	b.Grow(len(s))
	at = make([]int, 0, len(s))
	for i := 0; i < len(s); {
		if s[i] == '\n' {
			b.WriteByte(' ')
			at = append(at, i)
			i = skipMarker(s, i+1)
			continue
		}
		b.WriteByte(s[i])
		at = append(at, i)
		i++
	}
	return b.String(), at
}

// skipMarker skips the blanks and comment marker (// or #) that start the
// line at i.
func skipMarker(s string, i int) int {
	blanks := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	blanks()
	if strings.HasPrefix(s[i:], "//") {
		i += 2
	} else if strings.HasPrefix(s[i:], "#") {
		i++
	}
	blanks()
	return i
}

func TestCitedSectionsExist(t *testing.T) {
	r := loadRepo(t)
	const protocol = "docs/protocol.md"
	if r.sections(protocol) == nil {
		t.Fatalf("%s is missing", protocol)
	}
	cache := map[string]map[string]bool{}
	for _, f := range r.files {
		if !strings.Contains(f.text, "§") {
			continue
		}
		flat, at := flatten(f.text)
		for _, m := range section.FindAllStringSubmatchIndex(flat, -1) {
			num := flat[m[2]:m[3]]
			line := lineOf(f.text, at[m[0]])
			// A citation names its document within a line or two.
			before := flat[max(0, m[0]-300):m[0]]
			before = before[:len(before)-len(citationRun.FindString(before))]
			a := anchor.FindStringSubmatch(before)
			doc := ""
			switch {
			case a != nil && a[1] == "":
				continue // a draft or an RFC: a standard, not a file
			case a != nil:
				p, ok := r.resolve(f.name, a[1])
				if !ok {
					continue // reported by TestCitedMarkdownFilesExist
				}
				doc = p
			case f.name == protocol:
				doc = protocol // its own sections
			default:
				t.Errorf("%s:%d: §%s does not say which document it cites; write e.g. %q", f.name, line, num, protocol+" §"+num)
				continue
			}
			secs, ok := cache[doc]
			if !ok {
				secs = r.sections(doc)
				cache[doc] = secs
			}
			if len(secs) == 0 {
				t.Errorf("%s:%d: cites §%s of %s, which has no numbered sections", f.name, line, num, doc)
			} else if !secs[num] {
				t.Errorf("%s:%d: cites §%s of %s, which has no such section", f.name, line, num, doc)
			}
		}
	}
}

// invariantHeading is how docs/invariants.md numbers its invariants.
var invariantHeading = regexp.MustCompile(`(?m)^## Invariant (\d+)\b`)

// invariantRef is a citation of invariants by number: "invariant 3",
// "invariants 1 and 2", "invariants 1–5".
var invariantRef = regexp.MustCompile(`(?i)\binvariants?\s+(\d+)(?:\s*(?:–|-|and|,)\s*(\d+))?`)

func TestCitedInvariantsExist(t *testing.T) {
	r := loadRepo(t)
	const doc = "docs/invariants.md"
	defined := map[int]bool{}
	for _, f := range r.files {
		if f.name == doc {
			for _, m := range invariantHeading.FindAllStringSubmatch(f.text, -1) {
				n, _ := strconv.Atoi(m[1])
				defined[n] = true
			}
		}
	}
	if len(defined) == 0 {
		t.Fatalf("%s is missing or numbers no invariant (## Invariant N)", doc)
	}
	for _, f := range r.files {
		if !strings.Contains(strings.ToLower(f.text), "invariant") {
			continue
		}
		flat, at := flatten(f.text)
		for _, m := range invariantRef.FindAllStringSubmatchIndex(flat, -1) {
			for _, g := range [][2]int{{m[2], m[3]}, {m[4], m[5]}} {
				if g[0] < 0 {
					continue
				}
				n, _ := strconv.Atoi(flat[g[0]:g[1]])
				if !defined[n] {
					t.Errorf("%s:%d: cites invariant %d; %s defines %v", f.name, lineOf(f.text, at[m[0]]), n, doc, keys(defined))
				}
			}
		}
	}
}

func keys(m map[int]bool) []int {
	var k []int
	for n := range m {
		k = append(k, n)
	}
	sort.Ints(k)
	return k
}

// TestInvariantsNameWhatExists checks that the code and tests
// docs/invariants.md names are there: every `path` it names is tracked,
// every `TestXxx`/`FuzzXxx` is a function of a test file, and every
// `Name` given as `path: Name` is declared in that file.
func TestInvariantsNameWhatExists(t *testing.T) {
	r := loadRepo(t)
	const doc = "docs/invariants.md"
	var text string
	declared := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (?:\([^)]*\) )?(\w+)`)
	bodies := map[string]string{}
	for _, f := range r.files {
		if f.name == doc {
			text = f.text
		}
		if strings.HasSuffix(f.name, ".go") {
			bodies[f.name] = f.text
			if strings.HasSuffix(f.name, "_test.go") {
				for _, m := range decl.FindAllStringSubmatch(f.text, -1) {
					declared[m[1]] = true
				}
			}
		}
	}
	if text == "" {
		t.Fatalf("%s is missing", doc)
	}
	for _, m := range regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllStringSubmatch(text, -1) {
		if !declared[m[1]] {
			t.Errorf("%s names %s, which no test file declares", doc, m[1])
		}
	}
	paths := regexp.MustCompile("`([A-Za-z0-9_./-]+\\.(?:go|md))`(?::\\s*((?:`[A-Za-z0-9_.]+`(?:,\\s*)?)+))?")
	for _, m := range paths.FindAllStringSubmatch(text, -1) {
		p, ok := r.resolve(doc, m[1])
		if !ok {
			t.Errorf("%s names %s, which is not in the repository", doc, m[1])
			continue
		}
		for _, name := range regexp.MustCompile("`([A-Za-z0-9_.]+)`").FindAllStringSubmatch(m[2], -1) {
			fn := name[1][strings.LastIndex(name[1], ".")+1:]
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^func (?:\([^)]*\) )?%s\b`, regexp.QuoteMeta(fn))).MatchString(bodies[p]) {
				t.Errorf("%s names %s in %s, which does not declare it", doc, name[1], p)
			}
		}
	}
}
