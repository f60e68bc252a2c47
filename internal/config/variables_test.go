package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestTableEntriesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Table {
		if v.Name == "" || v.Help == "" || v.Set == nil || v.Reads == 0 || v.Reads&^Both != 0 {
			t.Errorf("%q: want a name, a help line, a parser and the commands that read it: %+v", v.Name, v)
		}
		if seen[v.Name] {
			t.Errorf("%s is in Table twice", v.Name)
		}
		seen[v.Name] = true
	}
}

// descriptiveDefaults are the defaults Table words for people, not as a
// value: the setting is unset by default.
var descriptiveDefaults = map[string]bool{"CALLBACK_HOSTS": true}

// TestDefaultsAreTheTable: the default each entry shows is what Defaults
// holds: setting it over Defaults changes nothing.
func TestDefaultsAreTheTable(t *testing.T) {
	for _, v := range Table {
		if v.Default == "" {
			continue
		}
		c := Defaults
		err := v.Set(&c, v.Default)
		if descriptiveDefaults[v.Name] {
			if err == nil {
				t.Errorf("%s: the default %q parses; take it out of descriptiveDefaults", v.Name, v.Default)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: the default %q does not parse: %v", v.Name, v.Default, err)
		}
		if !reflect.DeepEqual(c, Defaults) {
			t.Errorf("%s: Table shows the default %q, but Defaults holds another value", v.Name, v.Default)
		}
	}
	if Defaults.CallbackHosts != "" {
		t.Errorf("Defaults.CallbackHosts = %q; Table says none is set", Defaults.CallbackHosts)
	}
}

func TestHelpListsWhatEachCommandReads(t *testing.T) {
	for _, cmd := range []Command{Worker, Enqueue} {
		help := Help(cmd)
		for _, v := range Table {
			listed := strings.Contains(help, "  "+v.label()+" ")
			if reads := v.Reads&cmd != 0; listed != reads {
				t.Errorf("Help(%d): %s listed %v, read %v", cmd, v.Name, listed, reads)
			}
			if v.Reads&cmd != 0 && v.Default != "" && !strings.Contains(help, "["+v.Default+"]") {
				t.Errorf("Help(%d): %s's default [%s] is missing", cmd, v.Name, v.Default)
			}
		}
		for line := range strings.Lines(help) {
			if len(line) > helpWidth+1 && strings.Contains(strings.TrimSpace(line), " ") {
				t.Errorf("Help(%d): line longer than %d bytes: %q", cmd, helpWidth, line)
			}
		}
	}
}

// TestREADMEListsTheTable: the README's Configuration table lists exactly
// Table's variables, each with its _FILE form when it has one and the same
// default. A row may group variables ("`A`, `B`" with defaults "`1s`, 2");
// "—" means no default.
func TestREADMEListsTheTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := map[string]Var{}
	var order []string
	for _, row := range configurationRows(t, string(b)) {
		names := strings.Split(row[0], ", ")
		defaults := strings.Split(row[2], ", ")
		if len(names) > 1 && len(defaults) != len(names) {
			t.Errorf("README: row %q groups %d variables but gives %d defaults", row[0], len(names), len(defaults))
			continue
		}
		if len(names) == 1 {
			defaults = []string{row[2]}
		}
		for i, cell := range names {
			name, file, _ := strings.Cut(cell, " / ")
			v := Var{Name: unquote(name), Default: unquote(defaults[i])}
			if file != "" {
				if unquote(file) != v.Name+"_FILE" {
					t.Errorf("README: %q: want `%s` / `%s_FILE`", cell, v.Name, v.Name)
				}
				v.File = true
			}
			if strings.HasPrefix(v.Default, "—") {
				v.Default = ""
			}
			if _, dup := readme[v.Name]; dup {
				t.Errorf("README: %s has two rows", v.Name)
			}
			readme[v.Name] = v
			order = append(order, v.Name)
		}
	}
	for _, v := range Table {
		r, ok := readme[v.Name]
		switch {
		case !ok:
			t.Errorf("README: the Configuration table lacks %s", v.Name)
			continue
		case r.File != v.File:
			t.Errorf("README: %s: _FILE form %v, Table says %v", v.Name, r.File, v.File)
		case r.Default != v.Default:
			t.Errorf("README: %s: default %q, Table says %q", v.Name, r.Default, v.Default)
		}
		delete(readme, v.Name)
	}
	for _, name := range order {
		if _, left := readme[name]; left {
			t.Errorf("README: the Configuration table lists %s, which Table does not", name)
		}
	}
}

// configurationRows are the cells of the table rows between the README's
// "## Configuration" heading and the next heading, header and rule left out.
func configurationRows(t *testing.T, readme string) [][]string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Configuration\n")
	if !ok {
		t.Fatal(`README: no "## Configuration" heading`)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	var rows [][]string
	for line := range strings.Lines(section) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 3 {
			t.Fatalf("README: row %q has %d cells, want 3 (variable, meaning, default)", line, len(cells))
		}
		if cells[0] == "variable" || strings.Trim(cells[0], "-: ") == "" {
			continue
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatal("README: no rows in the Configuration table")
	}
	return rows
}

// unquote drops the backticks around a README cell's value.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' && !slices.Contains([]byte(s[1:len(s)-1]), '`') {
		return s[1 : len(s)-1]
	}
	return s
}
