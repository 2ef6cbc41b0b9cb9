package conformance

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ReportJSONSchema is the JSON Schema (draft 2020-12) of the JSON report,
// ReportSchema: what a tool reading reports may rely on.
//
//go:embed report.schema.json
var ReportJSONSchema []byte

// ValidateReport checks a JSON report against ReportJSONSchema. Fields
// the schema does not name are allowed: the schema only ever grows.
func ValidateReport(report []byte) error { return validateReport(report, false) }

// validateReport is ValidateReport; closed also refuses fields the schema
// does not name, which shows that the schema describes every field.
func validateReport(report []byte, closed bool) error {
	var schema map[string]any
	if err := json.Unmarshal(ReportJSONSchema, &schema); err != nil {
		return fmt.Errorf("the report schema itself: %w", err)
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(report))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("the report is not JSON: %w", err)
	}
	v := schemaValidator{root: schema, closed: closed}
	v.check(schema, doc, "")
	if len(v.problems) > 0 {
		return errors.New("the report does not follow " + ReportSchema + ": " + strings.Join(v.problems, "; "))
	}
	return nil
}

// schemaValidator checks a document against the part of JSON Schema the
// report schema uses: type, enum, required, properties, items, minimum and
// local $ref.
type schemaValidator struct {
	root     map[string]any
	closed   bool
	problems []string
}

func (v *schemaValidator) fail(path, format string, args ...any) {
	if path == "" {
		path = "(top)"
	}
	if len(v.problems) < 20 {
		v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
	}
}

func (v *schemaValidator) check(s map[string]any, doc any, path string) {
	if ref, ok := s["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := v.root["$defs"].(map[string]any)
		target, _ := defs[name].(map[string]any)
		if !found || target == nil {
			v.fail(path, "the schema refers to %s, which it does not define", ref)
			return
		}
		s = target
	}
	if enum, ok := s["enum"].([]any); ok {
		ok := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(doc) {
				ok = true
			}
		}
		if !ok {
			v.fail(path, "%v is not one of %v", doc, enum)
		}
	}
	if t, ok := s["type"]; ok && !typeMatches(t, doc) {
		v.fail(path, "%s, want %v", jsonType(doc), t)
		return
	}
	if min, ok := s["minimum"].(float64); ok {
		if n, isNum := doc.(json.Number); isNum {
			if f, err := n.Float64(); err == nil && f < min {
				v.fail(path, "%v is below %v", f, min)
			}
		}
	}
	switch d := doc.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := d[r.(string)]; !ok {
				v.fail(path, "required field %q is missing", r)
			}
		}
		names := make([]string, 0, len(d))
		for k := range d {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if v.closed && props != nil {
					v.fail(path+"/"+k, "a field the schema does not describe")
				}
				continue
			}
			v.check(ps, d[k], path+"/"+k)
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range d {
				v.check(items, e, fmt.Sprintf("%s/%d", path, i))
			}
		}
	}
}

func typeMatches(t any, doc any) bool {
	switch tt := t.(type) {
	case string:
		return isType(tt, doc)
	case []any:
		for _, x := range tt {
			if s, ok := x.(string); ok && isType(s, doc) {
				return true
			}
		}
	}
	return false
}

func isType(t string, doc any) bool {
	switch t {
	case "integer":
		n, ok := doc.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "number":
		_, ok := doc.(json.Number)
		return ok
	}
	return jsonType(doc) == t
}

func jsonType(doc any) string {
	switch doc.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", doc)
}

// ValidateJSON checks doc against schema, a JSON Schema that keeps to
// the part ValidateReport understands, refusing fields it does not
// describe; other reports of stepkit (the fuzzer's) are checked with it.
func ValidateJSON(schema, doc []byte) error {
	var s map[string]any
	if err := json.Unmarshal(schema, &s); err != nil {
		return fmt.Errorf("the schema itself: %w", err)
	}
	var d any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("the document is not JSON: %w", err)
	}
	v := schemaValidator{root: s, closed: true}
	v.check(s, d, "")
	if len(v.problems) > 0 {
		return errors.New("the document does not follow its schema: " + strings.Join(v.problems, "; "))
	}
	return nil
}
