package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// An apps file (ZHIMA_APPS_FILE) lists the apps of one deployment. Each
// entry takes the per-app variables (Var.PerApp) under their names in lower
// case less "ZHIMA_" (app_id, app_private_key_file, alipay_public_key_file,
// app_cert_file, …, qps), and daily_budget:
//
//	apps:
//	  - app_id: "2021000000000001"
//	    app_private_key_file: /etc/zhimaq/lender-a/app_private_key.pem
//	    alipay_public_key_file: /etc/zhimaq/lender-a/alipay_public_key.pem
//	    qps: 20
//	    daily_budget:
//	      zhima.credit.score.brief.get: 5000
//
// Load checks the file's form and every value that is not a file; the key
// files are read by Apps, in the worker only: enqueue and the API need the
// app ids alone.

// appEntry is one app of the file as written: its settings by variable name
// (ZHIMA_APP_PRIVATE_KEY_FILE, …), files not read yet.
type appEntry struct {
	id       string
	settings map[string]string
	budget   map[string]int
}

// maxAppsFile bounds the apps file that Load reads.
const maxAppsFile = 1 << 20

// fileKey is a per-app variable's key in the apps file.
func fileKey(variable string) string {
	return strings.ToLower(strings.TrimPrefix(variable, "ZHIMA_"))
}

// perApp are the variables an apps file gives per app.
func perApp() []Var {
	var vars []Var
	for _, v := range Table {
		if v.PerApp {
			vars = append(vars, v)
		}
	}
	return vars
}

// loadAppsFile reads ZHIMA_APPS_FILE into c.apps, refusing it beside any
// single-app variable.
func (c *Config) loadAppsFile(getenv func(string) string) error {
	var both []string
	for _, v := range perApp() {
		for _, name := range v.names() {
			if getenv(name) != "" {
				both = append(both, name)
			}
		}
	}
	if len(both) > 0 {
		return fmt.Errorf("ZHIMA_APPS_FILE and %s are both set: give every app's settings in the file, or leave ZHIMA_APPS_FILE unset for a single app", strings.Join(both, ", "))
	}
	return c.UseAppsFile(c.AppsFile)
}

// UseAppsFile makes c serve the apps of the apps file at path, in place of
// the single app of the ZHIMA_* variables (Load does it for
// ZHIMA_APPS_FILE); like Load, it reads no key file.
func (c *Config) UseAppsFile(path string) error {
	c.AppsFile, c.App = path, Defaults.App
	f, err := os.Open(c.AppsFile)
	if err != nil {
		return fmt.Errorf("ZHIMA_APPS_FILE: cannot read %s: %v", c.AppsFile, errors.Unwrap(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAppsFile+1))
	if err != nil {
		return fmt.Errorf("ZHIMA_APPS_FILE: cannot read %s: %v", c.AppsFile, err)
	}
	if len(data) > maxAppsFile {
		return fmt.Errorf("ZHIMA_APPS_FILE: %s is larger than %d bytes", c.AppsFile, maxAppsFile)
	}
	apps, err := parseApps(data)
	if err != nil {
		return fmt.Errorf("ZHIMA_APPS_FILE: %s: %w", c.AppsFile, err)
	}
	c.apps = apps
	return nil
}

// parseApps reads an apps file and checks every entry's form and the
// values that are not files.
func parseApps(data []byte) ([]appEntry, error) {
	var doc struct {
		Apps []map[string]yaml.Node `yaml:"apps"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		// yaml's errors quote a line's position and, for a type error,
		// the value: a key pasted in the wrong place would be echoed.
		return nil, errors.New(yamlProblem(err))
	}
	if len(doc.Apps) == 0 {
		return nil, errors.New(`lists no app: want "apps:" and one entry per app`)
	}
	known := map[string]string{} // file key → variable
	for _, v := range perApp() {
		for _, name := range v.names() {
			known[fileKey(name)] = name
		}
	}
	var entries []appEntry
	for i, raw := range doc.Apps {
		e, err := parseApp(raw, known)
		if err != nil {
			label := fmt.Sprintf("app %d", i+1)
			if e.id != "" {
				label += " (" + e.id + ")"
			}
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		for _, prev := range entries {
			if prev.id == e.id {
				return nil, fmt.Errorf("app %d: app_id %s is listed twice", i+1, e.id)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func parseApp(raw map[string]yaml.Node, known map[string]string) (appEntry, error) {
	e := appEntry{settings: map[string]string{}}
	if n, ok := raw["app_id"]; ok && n.Kind == yaml.ScalarNode {
		e.id = strings.TrimSpace(n.Value)
		if idempotency.ValidAppID(e.id) != nil {
			e.id = "" // not echoed: it may hold anything
			return e, errors.New("app_id: holds ':', a space or a control character")
		}
	}
	if e.id == "" {
		return e, errors.New("app_id: is required")
	}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		n := raw[k]
		switch variable, ok := known[k]; {
		case k == "daily_budget":
			budget, err := parseBudget(n)
			if err != nil {
				return e, fmt.Errorf("daily_budget: %w", err)
			}
			e.budget = budget
		case !ok:
			return e, fmt.Errorf("unknown setting %q; known: %s, daily_budget", k, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		case n.Kind != yaml.ScalarNode:
			return e, fmt.Errorf("%s: want a single value", k)
		default:
			e.settings[variable] = strings.TrimSpace(n.Value)
		}
	}
	// Every value that is not a file is checked now; files are read by Apps.
	var probe Config
	probe.App = Defaults.App
	inline := func(name string) string {
		if strings.HasSuffix(name, "_FILE") && e.settings[strings.TrimSuffix(name, "_FILE")] == "" {
			return "" // the file alone: not read here
		}
		return e.settings[name] // both: value refuses them
	}
	if err := probe.set(perApp(), inline, fileKey); err != nil {
		return e, err
	}
	return e, nil
}

// parseBudget reads daily_budget: method → billed calls a Beijing day.
func parseBudget(n yaml.Node) (map[string]int, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("want one line per method: <method>: <calls a day>")
	}
	budget := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		method, value := n.Content[i].Value, n.Content[i+1]
		if !slices.Contains(zhima.Methods, method) {
			return nil, fmt.Errorf("unknown method; want one of %s", strings.Join(zhima.Methods, ", "))
		}
		calls, err := strconv.Atoi(value.Value)
		if err != nil || calls < 0 || value.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: want a whole number of calls ≥ 0", method)
		}
		budget[method] = calls
	}
	return budget, nil
}

// yamlProblem is a YAML error without any value it quotes.
func yamlProblem(err error) string {
	msg := err.Error()
	if te, ok := errors.AsType[*yaml.TypeError](err); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if i := strings.Index(msg, "cannot unmarshal"); i >= 0 {
		msg = msg[:i] + "has a value of the wrong kind"
	}
	return "not an apps file: " + strings.TrimPrefix(msg, "yaml: ")
}

// AppIDs are the apps this configuration serves: the file's, in its order,
// or ZHIMA_APP_ID's; the first is the default of a job that names none.
// They need no key file read.
func (c Config) AppIDs() []string {
	if c.AppsFile == "" {
		if c.AppID == "" {
			return nil
		}
		return []string{c.AppID}
	}
	ids := make([]string, len(c.apps))
	for i, e := range c.apps {
		ids[i] = e.id
	}
	return ids
}

// Apps are the apps a worker calls as, each with its keys read and
// checked: the file's, in its order, or the single app of the ZHIMA_*
// variables. An app that lacks a setting it needs, or whose key file
// cannot be read, fails it with a line naming the app and the setting.
func (c Config) Apps() ([]App, error) {
	if c.AppsFile == "" {
		if err := c.App.check(plainName); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		return []App{c.App}, nil
	}
	apps := make([]App, 0, len(c.apps))
	for _, e := range c.apps {
		app := Config{App: Defaults.App}
		err := app.set(perApp(), func(name string) string { return e.settings[name] }, fileKey)
		if err == nil {
			err = app.App.check(fileKey)
		}
		if err != nil {
			return nil, fmt.Errorf("config: ZHIMA_APPS_FILE: app %s: %w", e.id, err)
		}
		app.DailyBudget = e.budget
		apps = append(apps, app.App)
	}
	return apps, nil
}

// names are the variable's names in the environment: NAME, and NAME_FILE
// when it has one.
func (v Var) names() []string {
	if v.File {
		return []string{v.Name, v.Name + "_FILE"}
	}
	return []string{v.Name}
}
