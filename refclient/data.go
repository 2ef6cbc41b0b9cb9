package refclient

import (
	"context"

	"github.com/stepkit/stepkit/spec"
)

// isEnvelope reports whether field is one every message carries or a
// request adds; such fields are not part of a stored DATA document.
func isEnvelope(field string) bool {
	switch field {
	case spec.FieldOperation, spec.FieldDirection, spec.FieldType,
		spec.FieldToken, spec.FieldStatus, spec.FieldStatusMsg:
		return true
	}
	return false
}

// SaveData stores doc's fields under key (DATA SAVE). An empty key lets the
// server choose one (a UUID4 on the course server). It returns the key the
// server reports. Envelope fields of doc (operation, direction, type, token,
// status, status_msg) are not sent as document fields.
func (c *Client) SaveData(ctx context.Context, key string, doc *spec.Message) (string, error) {
	req := spec.NewRequest(spec.OpSave, spec.TypeData)
	if doc != nil {
		for _, f := range doc.Fields() {
			if isEnvelope(f) || f == spec.FieldKey {
				continue
			}
			raw, _ := doc.Raw(f)
			req.SetRaw(f, raw)
		}
	}
	if key != "" {
		req.Set(spec.FieldKey, key)
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return "", err
	}
	got, kerr := resp.Key()
	if kerr != nil {
		if key == "" {
			return "", &ProtocolError{Op: spec.OpSave, Type: spec.TypeData, Msg: "response has no key", Response: resp}
		}
		got = key
	}
	return got, nil
}

// GetData fetches the document stored under key (DATA GET). The returned
// message holds the document's fields without the response's envelope.
func (c *Client) GetData(ctx context.Context, key string) (*spec.Message, error) {
	req := spec.NewRequest(spec.OpGet, spec.TypeData).Set(spec.FieldKey, key)
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	doc := spec.NewMessage()
	for _, f := range resp.Fields() {
		if isEnvelope(f) {
			continue
		}
		raw, _ := resp.Raw(f)
		doc.SetRaw(f, raw)
	}
	return doc, nil
}

// DeleteData removes the document stored under key (DATA DELETE).
func (c *Client) DeleteData(ctx context.Context, key string) error {
	_, err := c.Do(ctx, spec.NewRequest(spec.OpDelete, spec.TypeData).Set(spec.FieldKey, key))
	return err
}
