// Package deploy checks the repository's docker-compose.yml and Dockerfile
// without Docker: that the stack has the services it promises, that every
// variable it sets is one the commands read, that every key file it names is
// inside a mounted volume and that the workers reach the sandbox and Redis.
// A mistake fails `make test` with the service and the variable at fault,
// instead of a container that exits on start-up.
package deploy

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/zhimaq/zhimaq/internal/config"
)

const (
	composePath    = "../docker-compose.yml"
	dockerfilePath = "../Dockerfile"
	sandboxMain    = "../cmd/zhima-sandbox/main.go"
)

// sandboxVariables are the environment variables zhima-sandbox reads
// (cmd/zhima-sandbox: envAppPublicKeyFile, envAppID);
// TestSandboxReadsWhatComposeSets checks they are still there.
var sandboxVariables = []string{"ZHIMA_APP_PUBLIC_KEY_FILE", "ZHIMA_APP_ID"}

// commands are the binaries the image holds, by what they read.
var commands = map[string][]string{
	"worker":        config.Variables,
	"enqueue":       config.Variables,
	"zhima-sandbox": sandboxVariables,
}

// The parts of the compose specification the checks look at.
type composeFile struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

type service struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Entrypoint  words          `yaml:"entrypoint"`
	Command     words          `yaml:"command"`
	Environment environment    `yaml:"environment"`
	Volumes     []mount        `yaml:"volumes"`
	Ports       []port         `yaml:"ports"`
	DependsOn   dependsOn      `yaml:"depends_on"`
	Profiles    []string       `yaml:"profiles"`
	Healthcheck map[string]any `yaml:"healthcheck"`
}

// words is a command or entrypoint, in list form or as one string.
type words []string

func (w *words) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*w = strings.Fields(n.Value)
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*w = l
	return err
}

// environment is a service's variables, from the map or the KEY=VALUE list
// form, with ${VAR:-default} replaced by its default.
type environment map[string]string

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	*e = environment{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = interpolate(v)
		}
		return nil
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		if v == nil {
			(*e)[k] = "" // passed through from the host
			continue
		}
		(*e)[k] = interpolate(fmt.Sprint(v))
	}
	return nil
}

// mount is a volumes entry: a named volume, a bind mount or an anonymous volume.
type mount struct {
	Source, Target string
	ReadOnly       bool
}

// Named reports whether the source is a named volume rather than a host path.
func (m mount) Named() bool {
	return m.Source != "" && !strings.ContainsAny(m.Source[:1], "./~")
}

func (m *mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(interpolate(n.Value), ":")
		switch len(parts) {
		case 1:
			m.Target = parts[0]
		case 2, 3:
			m.Source, m.Target = parts[0], parts[1]
			m.ReadOnly = len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")
		default:
			return fmt.Errorf("volume %q: want [SOURCE:]TARGET[:MODE]", n.Value)
		}
		return nil
	}
	var long struct {
		Source   string `yaml:"source"`
		Target   string `yaml:"target"`
		ReadOnly bool   `yaml:"read_only"`
	}
	err := n.Decode(&long)
	m.Source, m.Target, m.ReadOnly = interpolate(long.Source), interpolate(long.Target), long.ReadOnly
	return err
}

// port is a ports entry: the host port and the container port.
type port struct{ Published, Target string }

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(interpolate(n.Value), ":")
		p.Target, _, _ = strings.Cut(parts[len(parts)-1], "/")
		if len(parts) > 1 {
			p.Published = parts[len(parts)-2]
		}
		return nil
	}
	var long struct {
		Target    any `yaml:"target"`
		Published any `yaml:"published"`
	}
	err := n.Decode(&long)
	p.Target, p.Published = fmt.Sprint(long.Target), fmt.Sprint(long.Published)
	return err
}

// dependsOn maps a dependency to its condition, from either form.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		err := n.Decode(&l)
		for _, s := range l {
			(*d)[s] = "service_started"
		}
		return err
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	err := n.Decode(&m)
	for k, v := range m {
		(*d)[k] = cmp.Or(v.Condition, "service_started")
	}
	return err
}

var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate resolves ${VAR:-default} and ${VAR-default} to their default,
// other references to the empty string and $$ to $: the file as it runs with
// nothing set on the host.
func interpolate(s string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := varRef.FindStringSubmatch(ref)
		if m[2] == "-" || m[2] == ":-" {
			return m[3]
		}
		return ""
	})
}

// flags returns a command's --name=value and --name value flags; a flag
// followed by another flag or nothing has the value "".
func flags(args []string) map[string]string {
	f := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			value = args[i+1]
			i++
		}
		f[name] = interpolate(value)
	}
	return f
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	return &c
}

// images are the images the compose file builds from the Dockerfile.
func (c *composeFile) images() []string {
	var imgs []string
	for _, s := range c.Services {
		if s.Build != nil && s.Image != "" {
			imgs = append(imgs, s.Image)
		}
	}
	return imgs
}

// program is the zhimaq command a service runs ("" when it runs another
// image): the entrypoint's base name, or the image's default, the worker.
func (c *composeFile) program(s *service) string {
	if s.Build == nil && !slices.Contains(c.images(), s.Image) {
		return ""
	}
	if len(s.Entrypoint) == 0 {
		return "worker"
	}
	return path.Base(s.Entrypoint[0])
}

// servicesRunning returns the names of the services that run program, sorted.
func (c *composeFile) servicesRunning(program string) []string {
	var names []string
	for name, s := range c.Services {
		if c.program(s) == program {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// sortedNames returns the services' names in order, for stable messages.
func (c *composeFile) sortedNames() []string {
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestComposeHasTheStack(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"redis", "sandbox", "asynqmon", "keys", "enqueue"} {
		if c.Services[name] == nil {
			t.Errorf("docker-compose.yml: no service %q", name)
		}
	}
	if w := c.servicesRunning("worker"); len(w) < 2 {
		t.Errorf("docker-compose.yml: want two worker services, have %v", w)
	}
	if s := c.servicesRunning("zhima-sandbox"); !slices.Equal(s, []string{"sandbox"}) {
		t.Errorf("docker-compose.yml: want zhima-sandbox run by the service \"sandbox\", have %v", s)
	}
	if e := c.Services["enqueue"]; e != nil && !slices.Contains(e.Profiles, "tools") {
		t.Errorf("docker-compose.yml: service \"enqueue\" should be in the profile \"tools\", so `up` does not run it")
	}
	for _, name := range c.sortedNames() {
		s := c.Services[name]
		if p := c.program(s); p != "" && commands[p] == nil {
			t.Errorf("docker-compose.yml: service %q runs %q, which the image does not hold (want one of worker, enqueue, zhima-sandbox)", name, p)
		}
		for _, m := range s.Volumes {
			if _, ok := c.Volumes[m.Source]; m.Named() && !ok {
				t.Errorf("docker-compose.yml: service %q mounts the volume %q, which the top-level volumes do not declare", name, m.Source)
			}
		}
		for dep := range s.DependsOn {
			if c.Services[dep] == nil {
				t.Errorf("docker-compose.yml: service %q depends on %q, which is not a service", name, dep)
			}
		}
	}
}

func TestRedisKeepsAnAppendOnlyFile(t *testing.T) {
	r := loadCompose(t).Services["redis"]
	if r == nil {
		t.Fatal(`docker-compose.yml: no service "redis"`)
	}
	if f := flags(r.Command); f["appendonly"] != "yes" {
		t.Errorf("docker-compose.yml: service \"redis\": command %q does not turn AOF on (want --appendonly yes)", r.Command)
	}
	if !slices.ContainsFunc(r.Volumes, func(m mount) bool { return m.Named() && m.Target == "/data" }) {
		t.Error(`docker-compose.yml: service "redis": /data (where the AOF is written) is not a named volume`)
	}
	if r.Healthcheck == nil {
		t.Error(`docker-compose.yml: service "redis" has no healthcheck for the workers to wait on`)
	}
}

// TestEnvironmentIsReadByTheCommands: a misspelt variable is silently
// ignored by the commands, so it is refused here.
func TestEnvironmentIsReadByTheCommands(t *testing.T) {
	c := loadCompose(t)
	for _, name := range c.sortedNames() {
		s := c.Services[name]
		p := c.program(s)
		if p == "" || commands[p] == nil {
			continue
		}
		for _, v := range slices.Sorted(maps.Keys(s.Environment)) {
			if !slices.Contains(commands[p], v) {
				source := "config.Variables"
				if p == "zhima-sandbox" {
					source = "cmd/zhima-sandbox: " + strings.Join(sandboxVariables, ", ")
				}
				t.Errorf("docker-compose.yml: service %q sets %s, which %s does not read (%s)", name, v, p, source)
			}
			if base, ok := strings.CutSuffix(v, "_FILE"); ok && s.Environment[base] != "" && s.Environment[v] != "" {
				t.Errorf("docker-compose.yml: service %q sets both %s and %s; %s refuses that", name, base, v, p)
			}
		}
	}
}

// TestImageEnvironmentIsReadByTheCommands: the variables the Dockerfile sets
// are ones the worker and enqueue read, and HTTP_ADDR listens on every
// interface: the default, 127.0.0.1, is out of reach from outside a container.
func TestImageEnvironmentIsReadByTheCommands(t *testing.T) {
	env := imageEnv(t)
	for _, v := range slices.Sorted(maps.Keys(env)) {
		if !slices.Contains(config.Variables, v) {
			t.Errorf("Dockerfile: ENV %s, which the commands do not read (config.Variables)", v)
		}
	}
	host, _, err := net.SplitHostPort(env["HTTP_ADDR"])
	if err != nil || !everyInterface(host) {
		t.Errorf("Dockerfile: ENV HTTP_ADDR=%q; want one that listens on every interface, such as :8080", env["HTTP_ADDR"])
	}
}

// everyInterface reports whether a listener on host ("" included) listens
// on every interface.
func everyInterface(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// imageEnv is the environment the Dockerfile's final stage sets (ENV K=V …
// or ENV K V).
func imageEnv(t *testing.T) environment {
	t.Helper()
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(b))
	env := environment{}
	for _, in := range stages[len(stages)-1].Instructions {
		if in[0] != "ENV" {
			continue
		}
		if k, v, ok := strings.Cut(in[1], " "); ok && !strings.Contains(k, "=") {
			env[k] = strings.Trim(strings.TrimSpace(v), `"`)
			continue
		}
		for _, kv := range strings.Fields(in[1]) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

func TestSandboxReadsWhatComposeSets(t *testing.T) {
	b, err := os.ReadFile(sandboxMain)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, v := range sandboxVariables {
		if !strings.Contains(src, `"`+v+`"`) {
			t.Errorf("%s no longer reads %s; update sandboxVariables", sandboxMain, v)
		}
	}
	c := loadCompose(t)
	for _, name := range c.servicesRunning("zhima-sandbox") {
		for f := range flags(c.Services[name].Command) {
			if !strings.Contains(src, `"`+f+`"`) {
				t.Errorf("docker-compose.yml: service %q passes --%s, which zhima-sandbox does not define", name, f)
			}
		}
	}
}

// TestFilesAreInMountedVolumes: every *_FILE variable and every file flag
// names an absolute path inside a volume mounted in that service; files a
// service writes are in a writable one.
func TestFilesAreInMountedVolumes(t *testing.T) {
	c := loadCompose(t)
	for _, name := range c.sortedNames() {
		s := c.Services[name]
		check := func(what, p string, write bool) {
			m, ok := mountOf(s, p)
			switch {
			case !ok:
				t.Errorf("docker-compose.yml: service %q: %s=%s is not inside a volume mounted in the service (mounts: %s)", name, what, p, targets(s))
			case write && m.ReadOnly:
				t.Errorf("docker-compose.yml: service %q: %s=%s is written, but %s is mounted read-only", name, what, p, m.Target)
			}
		}
		for v, p := range s.Environment {
			if strings.HasSuffix(v, "_FILE") && p != "" {
				check(v, p, false)
			}
		}
		if c.program(s) == "" {
			continue
		}
		for f, p := range flags(s.Command) {
			switch {
			case strings.HasPrefix(f, "write-"):
				check("--"+f, p, true)
			case strings.HasSuffix(f, "-file") && p != "":
				check("--"+f, p, false)
			}
		}
	}
}

// mountOf returns the mount that holds the absolute path p.
func mountOf(s *service, p string) (mount, bool) {
	if !path.IsAbs(p) {
		return mount{}, false
	}
	p = path.Clean(p)
	for _, m := range s.Volumes {
		t := path.Clean(m.Target)
		if t != "/" && strings.HasPrefix(p, t+"/") {
			return m, true
		}
	}
	return mount{}, false
}

func targets(s *service) string {
	var t []string
	for _, m := range s.Volumes {
		t = append(t, m.Target)
	}
	if len(t) == 0 {
		return "none"
	}
	return strings.Join(t, ", ")
}

// TestWorkersReachTheSandboxAndRedis: the gateway URL names the sandbox
// service on the port it listens on, the Alipay public key the workers load
// is the file the sandbox writes, and workers and producers share Redis, the
// app and the data keys.
func TestWorkersReachTheSandboxAndRedis(t *testing.T) {
	c := loadCompose(t)
	sb := c.Services["sandbox"]
	if sb == nil || c.program(sb) != "zhima-sandbox" {
		t.Fatal(`docker-compose.yml: no service "sandbox" running zhima-sandbox`)
	}
	sbFlags := flags(sb.Command)
	_, sbPort, err := net.SplitHostPort(sbFlags["addr"])
	if err != nil || sbPort == "0" {
		t.Fatalf("docker-compose.yml: service \"sandbox\": --addr %q is not a fixed host:port", sbFlags["addr"])
	}
	sbKey, sbKeyMounted := mountOf(sb, sbFlags["write-alipay-public-key"])
	image := imageEnv(t)

	workers := c.servicesRunning("worker")
	hostPorts := map[string]string{}
	for _, name := range workers {
		w := c.Services[name]
		env := w.Environment
		u, err := url.Parse(env["ZHIMA_GATEWAY_URL"])
		switch {
		case err != nil || env["ZHIMA_GATEWAY_URL"] == "":
			t.Errorf("docker-compose.yml: service %q: ZHIMA_GATEWAY_URL %q is not a URL", name, env["ZHIMA_GATEWAY_URL"])
		case u.Hostname() != "sandbox" || u.Port() != sbPort || u.Path != "/gateway.do":
			t.Errorf("docker-compose.yml: service %q: ZHIMA_GATEWAY_URL=%s does not name the sandbox service (want http://sandbox:%s/gateway.do)", name, u, sbPort)
		}
		if w.DependsOn["sandbox"] == "" {
			t.Errorf("docker-compose.yml: service %q does not depend on \"sandbox\"", name)
		}
		if w.DependsOn["redis"] != "service_healthy" {
			t.Errorf("docker-compose.yml: service %q does not wait for \"redis\" to be healthy (depends_on condition: service_healthy)", name)
		}
		for _, v := range []string{"ZHIMA_APP_ID", "ZHIMA_APP_PRIVATE_KEY_FILE", "ZHIMA_ALIPAY_PUBLIC_KEY_FILE", "DATA_KEYS_FILE"} {
			if env[v] == "" {
				t.Errorf("docker-compose.yml: service %q does not set %s", name, v)
			}
		}
		if p := env["ZHIMA_ALIPAY_PUBLIC_KEY_FILE"]; p != "" && sbKeyMounted {
			m, ok := mountOf(w, p)
			if !ok || m.Source != sbKey.Source || !m.Named() || rel(m, p) != rel(sbKey, sbFlags["write-alipay-public-key"]) {
				t.Errorf("docker-compose.yml: service %q: ZHIMA_ALIPAY_PUBLIC_KEY_FILE=%s is not the file the sandbox writes (--write-alipay-public-key=%s in the volume %q)",
					name, p, sbFlags["write-alipay-public-key"], sbKey.Source)
			}
		}
		if env["ZHIMA_APP_ID"] != sb.Environment["ZHIMA_APP_ID"] && sb.Environment["ZHIMA_APP_ID"] != "" {
			t.Errorf("docker-compose.yml: service %q: ZHIMA_APP_ID=%s, but the sandbox accepts only %s", name, env["ZHIMA_APP_ID"], sb.Environment["ZHIMA_APP_ID"])
		}
		addr := cmp.Or(env["HTTP_ADDR"], image["HTTP_ADDR"], config.Defaults.HTTPAddr)
		host, httpPort, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("docker-compose.yml: service %q: HTTP_ADDR %q is not [host]:port", name, addr)
			continue
		}
		if !everyInterface(host) {
			t.Errorf("docker-compose.yml: service %q listens on HTTP_ADDR=%s, which nothing outside its container reaches; want :%s", name, addr, httpPort)
		}
		for _, p := range w.Ports {
			if p.Target != httpPort || p.Published == "" {
				continue
			}
			if other, dup := hostPorts[p.Published]; dup {
				t.Errorf("docker-compose.yml: services %q and %q both publish host port %s", other, name, p.Published)
			}
			hostPorts[p.Published] = name
		}
	}
	if len(hostPorts) < len(workers) {
		t.Errorf("docker-compose.yml: not every worker publishes its HTTP_ADDR port (published: %v)", hostPorts)
	}

	// Settings a producer must share with the workers (enqueue --help).
	shared := []string{"REDIS_URL", "ZHIMA_APP_ID", "DATA_KEYS", "DATA_KEYS_FILE", "ZHIMAQ_QUEUE", "ZHIMAQ_KEY_PREFIX", "DEDUP_WINDOW", "RESULT_TTL", "RETRY_MAX_ATTEMPTS"}
	clients := append(slices.Clone(workers), c.servicesRunning("enqueue")...)
	for _, name := range clients[1:] {
		for _, v := range shared {
			if a, b := c.Services[clients[0]].Environment[v], c.Services[name].Environment[v]; a != b {
				t.Errorf("docker-compose.yml: service %q sets %s=%q but %q sets %q; workers and producers must agree", name, v, b, clients[0], a)
			}
		}
	}
	for _, name := range clients {
		u, err := url.Parse(cmp.Or(c.Services[name].Environment["REDIS_URL"], config.Defaults.RedisURL))
		if err != nil || u.Hostname() != "redis" {
			t.Errorf("docker-compose.yml: service %q: REDIS_URL does not name the redis service", name)
		}
	}
	if a := c.Services["asynqmon"]; a != nil {
		if addr := flags(a.Command)["redis-addr"]; addr != "redis:6379" {
			t.Errorf("docker-compose.yml: service \"asynqmon\": --redis-addr=%q, want redis:6379, the workers' Redis", addr)
		}
		if !slices.ContainsFunc(a.Ports, func(p port) bool { return p.Published == "8980" }) {
			t.Error(`docker-compose.yml: service "asynqmon" does not publish port 8980`)
		}
	}
}

// rel is p relative to the mount that holds it.
func rel(m mount, p string) string {
	return strings.TrimPrefix(path.Clean(p), path.Clean(m.Target)+"/")
}

// A Dockerfile stage: FROM's image and name, then its instructions.
type stage struct {
	Image, Name  string
	Instructions [][2]string // {INSTRUCTION, arguments}
}

// parseDockerfile splits a Dockerfile into stages, joining continued lines
// and dropping comments. It knows only as much as the checks need.
func parseDockerfile(t *testing.T, text string) []stage {
	t.Helper()
	var stages []stage
	var line string
	for raw := range strings.SplitSeq(text, "\n") {
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			line += cont + " "
			continue
		}
		line += trimmed
		if line == "" {
			continue
		}
		instr, args, _ := strings.Cut(line, " ")
		instr, args = strings.ToUpper(instr), strings.TrimSpace(args)
		line = ""
		if instr == "FROM" {
			var st stage
			f := slices.DeleteFunc(strings.Fields(args), func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) == 0 {
				t.Fatalf("Dockerfile: FROM without an image")
			}
			st.Image = f[0]
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if instr != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", instr)
			}
			continue
		}
		st := &stages[len(stages)-1]
		st.Instructions = append(st.Instructions, [2]string{instr, args})
	}
	return stages
}

func TestDockerfileBuildsTheThreeCommands(t *testing.T) {
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(b))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a final stage, have %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.Image, "golang:1.26") || build.Name == "" {
		t.Errorf("Dockerfile: the first stage is FROM %s AS %q; want a named golang:1.26 build stage", build.Image, build.Name)
	}
	if strings.HasPrefix(final.Image, "golang") {
		t.Errorf("Dockerfile: the final stage is FROM %s; want a small base, not the Go toolchain", final.Image)
	}

	// go.mod and go.sum first, modules downloaded in their own layer, then the source.
	order := []string{"COPY go.mod go.sum", "RUN go mod download", "COPY . .", "go build"}
	next := 0
	var goBuild string
	for _, in := range build.Instructions {
		line := in[0] + " " + in[1]
		if next < len(order) && strings.Contains(line, order[next]) {
			next++
		}
		if strings.Contains(in[1], "go build") {
			goBuild = in[1]
		}
	}
	if next < len(order) {
		t.Errorf("Dockerfile: the build stage lacks %q in this order: %q", order[next], order)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "./cmd/worker", "./cmd/enqueue", "./cmd/zhima-sandbox"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("Dockerfile: the go build (%q) lacks %s", goBuild, want)
		}
	}

	finalHas := func(instr, want string) bool {
		return slices.ContainsFunc(final.Instructions, func(in [2]string) bool {
			return in[0] == instr && strings.Contains(in[1], want)
		})
	}
	for _, bin := range []string{"worker", "enqueue", "zhima-sandbox"} {
		if !slices.ContainsFunc(final.Instructions, func(in [2]string) bool {
			return in[0] == "COPY" && strings.Contains(in[1], "--from="+build.Name) && strings.Contains(in[1], bin)
		}) {
			t.Errorf("Dockerfile: the final stage does not copy %s from the %q stage", bin, build.Name)
		}
	}
	if !finalHas("COPY", "/usr/local/bin") {
		t.Error("Dockerfile: the final stage does not put the binaries in /usr/local/bin")
	}
	if !finalHas("ENTRYPOINT", "/usr/local/bin/worker") {
		t.Error(`Dockerfile: the default entrypoint is not the worker (ENTRYPOINT ["/usr/local/bin/worker"])`)
	}
	if !finalHas("EXPOSE", "8080") {
		t.Error("Dockerfile: the final stage does not EXPOSE 8080")
	}
	user := ""
	for _, in := range final.Instructions {
		if in[0] == "USER" {
			user = in[1]
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root:") {
		t.Errorf("Dockerfile: the final stage runs as %q; want a non-root USER", cmp.Or(user, "root"))
	}

	// The entrypoints compose gives the image are binaries it holds.
	c := loadCompose(t)
	for _, name := range c.sortedNames() {
		s := c.Services[name]
		if c.program(s) == "" {
			continue
		}
		if len(s.Entrypoint) > 0 && !strings.HasPrefix(s.Entrypoint[0], "/usr/local/bin/") {
			t.Errorf("docker-compose.yml: service %q: entrypoint %q is not in /usr/local/bin", name, s.Entrypoint[0])
		}
		if ctx, ok := s.Build.(string); ok && ctx != "." {
			t.Errorf("docker-compose.yml: service %q builds from %q, not the repository root's Dockerfile", name, ctx)
		}
	}
}

// TestInterpolate pins the subset of compose interpolation the checks use.
func TestInterpolate(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                     "plain",
		"${A:-x}":                   "x",
		"${A-x}/y":                  "x/y",
		"${A}":                      "",
		"$A-b":                      "-b",
		"$$A":                       "$A",
		"${JOBS_DIR:-./demo}:/jobs": "./demo:/jobs",
		"--rate=${R:-0}":            "--rate=0",
		"${A:?must be set}":         "",
	} {
		if got := interpolate(in); got != want {
			t.Errorf("interpolate(%q) = %q, want %q", in, got, want)
		}
	}
}
