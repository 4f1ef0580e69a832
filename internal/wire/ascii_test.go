package wire

import (
	"encoding/json"
	"testing"
)

func TestMarshalASCII(t *testing.T) {
	in := map[string]string{"prompt": "café 東京 🦊 <b>"}
	raw, err := MarshalASCII(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range raw {
		if b >= 0x80 {
			t.Fatalf("non-ASCII byte in %s", raw)
		}
	}
	want := `{"prompt":"caf\u00e9 \u6771\u4eac \ud83e\udd8a \u003cb\u003e"}`
	if string(raw) != want {
		t.Fatalf("got  %s\nwant %s", raw, want)
	}
	var back map[string]string
	if err := json.Unmarshal(raw, &back); err != nil || back["prompt"] != in["prompt"] {
		t.Fatalf("round trip: %v %q", err, back["prompt"])
	}
}

func TestEscapeNonASCIIKeepsASCII(t *testing.T) {
	raw := []byte(`{"a":"plain"}`)
	if got := EscapeNonASCII(raw); string(got) != string(raw) {
		t.Fatalf("changed: %s", got)
	}
}
