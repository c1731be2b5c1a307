// chart-render renders a Helm chart's templates the way `helm template` does, for tests on a
// machine with no helm binary (none is packaged for Debian 12 or on PyPI). It uses the same
// engines helm does — Go's text/template, sprig's function map, yaml.v3 and BurntSushi/toml, all
// Debian packages — plus helm's own few functions (include, tpl, required, toYaml, fromYaml,
// toToml). Not covered: subcharts, hooks, lookup, .Files beyond Get, schema validation.
//
//	chart-render [--name R] [--namespace NS] [-f values.yaml]... [--set a.b=v]... [--json] CHART_DIR
//
// --json prints the documents as one JSON list instead (for tests without a YAML parser).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"
	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// files is .Files: Get reads a file of the chart by its path relative to the chart's root.
type files struct{ dir string }

func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.Clean("/"+name)))
	if err != nil {
		return ""
	}
	return string(b)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// merge lays over onto base, recursing into maps; other values replace.
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if vm, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = merge(bm, vm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// setValue applies one --set a.b.c=v; v is typed as helm types it (bool, int, null, else string).
func setValue(values map[string]interface{}, expr string) error {
	key, raw, ok := strings.Cut(expr, "=")
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want key=value", expr)
	}
	var val interface{} = raw
	switch {
	case raw == "true" || raw == "false":
		val = raw == "true"
	case raw == "null":
		val = nil
	default:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			val = n
		}
	}
	parts := strings.Split(key, ".")
	m := values
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = val
	return nil
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func toTOML(v interface{}) string {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return err.Error()
	}
	return buf.String()
}

func fromYAML(s string) map[string]interface{} {
	out := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &out); err != nil {
		out["Error"] = err.Error()
	}
	return out
}

func main() {
	var valueFiles, sets multi
	name := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	flag.Var(&valueFiles, "f", "values file (repeatable)")
	flag.Var(&sets, "set", "a.b=value (repeatable)")
	asJSON := flag.Bool("json", false, "print the documents as a JSON list")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [flags] CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *name, *namespace, valueFiles, sets, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(dir, name, namespace string, valueFiles, sets []string, asJSON bool) error {
	meta, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		over, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	for _, s := range sets {
		if err := setValue(values, s); err != nil {
			return err
		}
	}
	chart := map[string]interface{}{}
	for k, v := range meta { // helm exposes Chart.yaml's keys capitalised: .Chart.AppVersion
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	chartName, _ := chart["Name"].(string)

	paths, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	root := template.New(chartName)
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toToml"] = toTOML
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(string, interface{}) (string, error) { return "", nil }
	funcs["tpl"] = func(string, interface{}) (string, error) { return "", nil }
	root.Funcs(funcs).Option("missingkey=zero")
	// include and tpl need the template set itself, so they are bound after it exists
	root.Funcs(template.FuncMap{
		"include": func(n string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, n, data)
			return buf.String(), err
		},
		"tpl": func(text string, data interface{}) (string, error) {
			t, err := root.Clone()
			if err != nil {
				return "", err
			}
			t, err = t.New("tpl").Parse(text)
			if err != nil {
				return "", err
			}
			var buf bytes.Buffer
			err = t.Execute(&buf, data)
			return buf.String(), err
		},
	})
	var rendered []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel := filepath.Join(chartName, "templates", filepath.Base(p))
		if _, err := root.New(rel).Parse(string(b)); err != nil {
			return err
		}
		if !strings.HasPrefix(filepath.Base(p), "_") && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			rendered = append(rendered, rel)
		}
	}
	var out strings.Builder
	docs := []interface{}{}
	for _, rel := range rendered {
		data := map[string]interface{}{
			"Values":       values,
			"Files":        files{dir},
			"Chart":        chart,
			"Release":      map[string]interface{}{"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true},
			"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.24.0", "Major": "1", "Minor": "24"}},
			"Template":     map[string]interface{}{"Name": rel, "BasePath": filepath.Join(chartName, "templates")},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, rel, data); err != nil {
			return err
		}
		body := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range strings.Split(body, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", rel, strings.Trim(doc, "\n"))
			var obj interface{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return fmt.Errorf("%s: not valid YAML: %w", rel, err)
			}
			docs = append(docs, obj)
		}
	}
	if asJSON {
		b, err := json.MarshalIndent(docs, "", " ")
		if err != nil {
			return err
		}
		out.Reset()
		out.Write(b)
		out.WriteString("\n")
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}
