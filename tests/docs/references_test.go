// Package docs keeps the repository's cross-references true. Every path a
// source or documentation file names must exist in the repository, every
// Markdown link must resolve, and comments may point only at documents
// the repository has: a section sign must follow a docs/ page whose
// numbered section it names, a numbered property must name the docs/ page
// that defines it, and the research notes the project started from and the
// tracker's issue numbers are not citable (their facts live in docs/).
package docs

import (
	"bytes"
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// scannedExt are the file kinds whose text is comments, code or prose;
// data (JSON, JSONL, ONNX, binaries, the tokenizer's vocabulary) is not
// scanned.
var scannedExt = map[string]bool{
	".go": true, ".py": true, ".sh": true, ".mjs": true, ".js": true, ".ts": true,
	".md": true, ".yml": true, ".yaml": true, ".toml": true,
}

// scanned reports whether a repository file is checked.
func scanned(rel string) bool {
	base := path.Base(rel)
	switch {
	case scannedExt[path.Ext(rel)]:
		return true
	case base == "Makefile", strings.HasPrefix(base, "Dockerfile"):
		return true
	case strings.HasPrefix(base, "requirements") && strings.HasSuffix(base, ".txt"):
		return true
	case strings.HasPrefix(rel, ".ci/"):
		return true
	}
	return false
}

// made are model directories that documented commands create (exports
// of the real and the random-weight model, the GPU check's payload) and
// that are never committed.
var made = []string{"models/klein-4b-base", "models/klein-4b-random", "models/klein-4b-base-random",
	"models/klein-4b-distilled", "models/klein-9b-base", "models/klein-9b-distilled",
	"models/klein", "models/klein-decomposed"}

// walkSkip are directories never listed when git is unavailable.
var walkSkip = map[string]bool{".git": true, "node_modules": true, ".cache": true, ".venv": true, ".ort": true}

// repo is the set of files a reference may point at.
type repo struct {
	root   string
	files  map[string]bool // slash paths relative to root
	dirs   map[string]bool
	top    map[string]bool // first path segments of the tree's directories
	ignore []string        // .gitignore patterns
	index  map[string]*docIndex
}

// listFiles returns the tracked files (git ls-files), or, without git, a
// walk of the tree that skips toolchain and build directories.
func listFiles(root string) ([]string, error) {
	cmd := exec.Command("git", "-C", root, "ls-files", "-z")
	if out, err := cmd.Output(); err == nil {
		var files []string
		for _, f := range bytes.Split(out, []byte{0}) {
			if len(f) == 0 {
				continue
			}
			// A tracked file deleted in the work tree is not there to read.
			if _, err := os.Stat(filepath.Join(root, string(f))); err == nil {
				files = append(files, string(f))
			}
		}
		return files, nil
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && walkSkip[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	return files, err
}

func loadRepo(t *testing.T) *repo {
	t.Helper()
	root := testenv.RepoRoot(t)
	files, err := listFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	r := &repo{root: root, files: map[string]bool{}, dirs: map[string]bool{}, top: map[string]bool{},
		index: map[string]*docIndex{}}
	for _, f := range files {
		r.files[f] = true
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			r.dirs[d] = true
		}
		if first, _, ok := strings.Cut(f, "/"); ok {
			r.top[first] = true
		}
	}
	if len(r.files) == 0 || !r.files["go.mod"] {
		t.Fatalf("listing %s found %d files and no go.mod", root, len(r.files))
	}
	if b, err := os.ReadFile(filepath.Join(root, ".gitignore")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				r.ignore = append(r.ignore, l)
			}
		}
	}
	return r
}

// exists reports whether rel (slash, relative to root) is a file or a
// directory of the repository.
func (r *repo) exists(rel string) bool {
	if strings.HasSuffix(rel, "-") {
		return true // a name pattern ("models/tiny-<variant>"), not a path
	}
	rel = path.Clean(rel)
	if slices.ContainsFunc(made, func(m string) bool { return rel == m || strings.HasPrefix(rel, m+"/") }) {
		return true
	}
	return rel == "." || r.files[rel] || r.dirs[rel]
}

// ignored reports whether rel matches .gitignore, as far as this test
// needs: anchored prefixes ("/.venv/") and per-segment globs ("*.pyc").
// Such paths are build outputs or toolchains that commands create.
func (r *repo) ignored(rel string) bool {
	rel = path.Clean(rel)
	for _, p := range r.ignore {
		if strings.HasPrefix(p, "/") {
			p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
			if rel == p || strings.HasPrefix(rel, p+"/") {
				return true
			}
			continue
		}
		p = strings.TrimSuffix(p, "/")
		for _, seg := range strings.Split(rel, "/") {
			if ok, _ := path.Match(p, seg); ok {
				return true
			}
		}
	}
	return false
}

// resolve returns the first of ref relative to the file's directory and
// ref relative to the root that exists, or "" when neither does.
func (r *repo) resolve(file, ref string) string {
	for _, c := range []string{path.Join(path.Dir(file), ref), ref} {
		c = path.Clean(c)
		if c == ".." || strings.HasPrefix(c, "../") {
			continue
		}
		if r.exists(c) {
			return c
		}
	}
	return ""
}

// docIndex is what a docs/ page offers to citations: its numbered
// sections and the numbered items of its properties section.
type docIndex struct {
	sections   map[string]bool
	properties map[int]bool
}

var (
	numberedHeading = regexp.MustCompile(`^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s`)
	anyHeading      = regexp.MustCompile(`^#{1,6}\s`)
	numberedItem    = regexp.MustCompile(`^(\d+)\.\s`)
)

func (r *repo) doc(rel string) *docIndex {
	if d, ok := r.index[rel]; ok {
		return d
	}
	d := &docIndex{sections: map[string]bool{}, properties: map[int]bool{}}
	r.index[rel] = d
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(rel)))
	if err != nil {
		return d
	}
	inProperties := false
	for _, l := range strings.Split(string(b), "\n") {
		if anyHeading.MatchString(l) {
			inProperties = strings.Contains(strings.ToLower(l), "propert")
			if m := numberedHeading.FindStringSubmatch(l); m != nil {
				d.sections[m[1]] = true
			}
			continue
		}
		if m := numberedItem.FindStringSubmatch(l); m != nil && inProperties {
			n, _ := strconv.Atoi(m[1])
			d.properties[n] = true
		}
	}
	return d
}

// The patterns. Go files are checked in their comments only, so the
// examples below are described rather than quoted.
var (
	// pathToken: a relative path of two or more segments that does not
	// continue a URL, an import path or a variable ($VENV/...).
	pathToken = regexp.MustCompile(`(?:^|[^\w./@$~-])((?:\.\.?/)*[\w.][\w.-]*(?:/[\w.-]+)+/?)`)
	// bareMarkdown: a Markdown file named without a directory.
	bareMarkdown = regexp.MustCompile(`(?:^|[^\w./@$~-])([\w-][\w.-]*\.md)\b`)
	// markdownLink: the target of [text](target).
	markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// docCitation: a page of docs/, as comments cite it.
	docCitation = regexp.MustCompile(`(?:^|[^\w./-])((?:\.\./)*docs/[\w.-]+\.md)`)
	// sectionRef: a section sign followed by what it names (a character
	// literal of the sign, as in a tokenizer corpus, is not a reference).
	sectionRef = regexp.MustCompile(`\x{00A7}\s*([0-9A-Za-z][\w.]*)`)
	// propertyRef: the word property (any case) and a number.
	propertyRef = regexp.MustCompile(`(?i)\bpropert(?:y|ies)\s+(\d+)`)
	// issueRef: the word issue (any case) and a number, with or without #.
	issueRef = regexp.MustCompile(`(?i)\bissues?\s+#?\d+`)
	// notes: the research notes outside the repository.
	notes = []*regexp.Regexp{
		regexp.MustCompile(`fal-api\.md`),
		regexp.MustCompile(`shared[/]spec`),
		regexp.MustCompile(`fal-endpoint-page`),
	}
)

// checkLine returns the problems of one line of file (a slash path
// relative to the root).
func (r *repo) checkLine(file, line string) []string {
	var probs []string
	for _, re := range notes {
		if m := re.FindString(line); m != "" {
			probs = append(probs, fmt.Sprintf("cites %q, a research note outside the repository; state the fact or cite docs/", m))
		}
	}
	if m := issueRef.FindString(line); m != "" {
		probs = append(probs, fmt.Sprintf("cites %q; state what it asked for or cite docs/", m))
	}

	// Paths and Markdown links.
	seen := map[string]bool{}
	for _, m := range pathToken.FindAllStringSubmatch(line, -1) {
		ref := trimRef(m[1])
		if ref == "" || seen[ref] {
			continue
		}
		seen[ref] = true
		first := strings.TrimLeft(ref, "./")
		first, _, _ = strings.Cut(first, "/")
		relative := strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../")
		if !relative && !r.top[first] {
			continue // not a path of this repository (a package, a URL path, another project's file)
		}
		if r.resolve(file, ref) == "" && !r.ignored(path.Clean(ref)) && !r.ignored(path.Join(path.Dir(file), ref)) {
			probs = append(probs, fmt.Sprintf("names %s, which is not in the repository", ref))
		}
	}
	for _, m := range bareMarkdown.FindAllStringSubmatch(line, -1) {
		if seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		if r.resolve(file, m[1]) == "" {
			probs = append(probs, fmt.Sprintf("names %s, which is not in the repository", m[1]))
		}
	}
	if strings.HasSuffix(file, ".md") {
		for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p := path.Clean(path.Join(path.Dir(file), target))
			if p == ".." || strings.HasPrefix(p, "../") || !r.exists(p) {
				probs = append(probs, fmt.Sprintf("links to %s, which does not resolve from %s", m[1], path.Dir(file)))
			}
		}
	}

	// Sections and properties must name a docs/ page that has them.
	cites := docCitation.FindAllStringSubmatchIndex(line, -1)
	citedAt := func(pos int) string { // the last page cited before pos
		page := ""
		for _, c := range cites {
			if c[2] < pos {
				page = line[c[2]:c[3]]
			}
		}
		if page == "" && strings.HasPrefix(file, "docs/") && path.Ext(file) == ".md" {
			return file // a page citing its own sections
		}
		if page != "" {
			page = r.resolve(file, page)
		}
		return page
	}
	for _, m := range sectionRef.FindAllStringSubmatchIndex(line, -1) {
		name := strings.TrimRight(line[m[2]:m[3]], ".")
		page := citedAt(m[0])
		switch {
		case page == "":
			probs = append(probs, fmt.Sprintf("section sign (%s) without the docs/ page it refers to", name))
		case !r.doc(page).sections[name]:
			probs = append(probs, fmt.Sprintf("cites section %s of %s, which has no such numbered section", name, page))
		}
	}
	for _, m := range propertyRef.FindAllStringSubmatchIndex(line, -1) {
		n, _ := strconv.Atoi(line[m[2]:m[3]])
		page := citedAt(len(line)) // the page may follow the number
		switch {
		case page == "":
			probs = append(probs, fmt.Sprintf("property %d without the docs/ page that defines it", n))
		case !r.doc(page).properties[n]:
			probs = append(probs, fmt.Sprintf("cites property %d of %s, which lists no such property", n, page))
		}
	}
	return probs
}

// trimRef drops what prose and shell put after a path: sentence dots, the
// Go tool's "/..." wildcard, a trailing slash.
func trimRef(ref string) string {
	if i := strings.Index(ref, "/..."); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimRight(ref, ".")
	return strings.TrimSuffix(ref, "/")
}

// textLine is one line to check and its line number.
type textLine struct {
	n    int
	text string
}

// lines returns what is checked of a file: every line, or for Go source
// only its comments (string literals there are data, such as the
// path-traversal inputs of the storage tests).
func lines(name string, src []byte) ([]textLine, error) {
	var out []textLine
	if path.Ext(name) != ".go" {
		for i, l := range strings.Split(string(src), "\n") {
			out = append(out, textLine{i + 1, l})
		}
		return out, nil
	}
	fset := token.NewFileSet()
	file := fset.AddFile(name, -1, len(src))
	var errs scanner.ErrorList
	var sc scanner.Scanner
	sc.Init(file, src, func(pos token.Position, msg string) { errs.Add(pos, msg) }, scanner.ScanComments)
	for {
		pos, tok, lit := sc.Scan()
		if tok == token.EOF {
			break
		}
		if tok != token.COMMENT {
			continue
		}
		first := fset.Position(pos).Line
		for i, l := range strings.Split(lit, "\n") {
			out = append(out, textLine{first + i, l})
		}
	}
	return out, errs.Err()
}

// TestRepositoryReferences scans every tracked source and documentation
// file. A failure names the file, the line and what is wrong with it.
func TestRepositoryReferences(t *testing.T) {
	r := loadRepo(t)
	var files []string
	for f := range r.files {
		if scanned(f) {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	if !slices.Contains(files, "README.md") || !slices.Contains(files, "Makefile") {
		t.Fatalf("the scan misses README.md or the Makefile: %d files", len(files))
	}
	problems := 0
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := lines(f, src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, l := range ls {
			for _, p := range r.checkLine(f, l.text) {
				t.Errorf("%s:%d: %s", f, l.n, p)
				problems++
			}
		}
	}
	t.Logf("%d files scanned, %d problems", len(files), problems)
}

// TestCheckLine pins what the scanner accepts and rejects, on a fixed
// miniature repository, so that a scanner that finds nothing cannot pass
// for a clean tree.
func TestCheckLine(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/cns.md", "# CNS\n\n## 3. Bands\n\n## 10. Properties the tests check\n\n1. Off is exact.\n6. Binning.\n")
	write("README.md", "x")
	write("internal/cns/bands.go", "package cns")
	r := &repo{root: dir, index: map[string]*docIndex{},
		files:  map[string]bool{"docs/cns.md": true, "README.md": true, "internal/cns/bands.go": true},
		dirs:   map[string]bool{"docs": true, "internal": true, "internal/cns": true},
		top:    map[string]bool{"docs": true, "internal": true},
		ignore: []string{"/.venv/", "*.pyc"}}
	sign := "\u00a7"
	for _, c := range []struct {
		file, line string
		bad        bool
	}{
		{"internal/cns/bands.go", "// Radial bands (docs/cns.md " + sign + "3).", false},
		{"internal/cns/bands.go", "// Radial bands (docs/cns.md " + sign + "4).", true},
		{"internal/cns/bands.go", "// Radial bands (spec " + sign + "1.2).", true},
		{"internal/cns/bands.go", "// Radial bands (cns" + ".md " + sign + "1.2).", true},
		{"internal/cns/bands.go", `	corpus := []string{"` + sign + `", "x"}`, false},
		{"internal/cns/bands.go", "// Property 6 (docs/cns.md " + sign + "10): binning.", false},
		{"internal/cns/bands.go", "// Property 7 (docs/cns.md): realness.", true},
		{"internal/cns/bands.go", "// Prop" + "erty 6: binning.", true},
		{"internal/cns/bands.go", "// See docs/model.md.", true},
		{"internal/cns/bands.go", "// See docs/cns.md and README.md.", false},
		{"internal/cns/bands.go", "// go test ./internal/... and ./internal/cns", false},
		{"internal/cns/bands.go", "// the bands of internal/cns/" + "missing.go", true},
		{"internal/cns/bands.go", "// the layout of https://example.com/docs/other.md", false},
		{"internal/cns/bands.go", "// written to .venv/bin and internal/x.pyc", false},
		{"internal/cns/bands.go", "// the test of Iss" + "ue #7", true},
		{"internal/cns/bands.go", "// as fal-api" + ".md says", true},
		{"internal/cns/bands.go", "// read ../shared" + "/spec/runtime.md", true},
		{"docs/cns.md", "See " + sign + "3 and property 6.", false},
		{"docs/cns.md", "See " + sign + "5.", true},
		{"docs/cns.md", "[readme](../README.md), [bands](#3-bands)", false},
		{"docs/cns.md", "[readme](README.md)", true},
	} {
		probs := r.checkLine(c.file, c.line)
		if (len(probs) > 0) != c.bad {
			t.Errorf("%s: %q: problems %q, want bad=%v", c.file, c.line, probs, c.bad)
		}
	}
}
