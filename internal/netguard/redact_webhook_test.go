package netguard

import "testing"

// The URLs webhook deliveries log: no credentials, no query values.
func TestRedactWebhookURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.com/a/b":                  "https://hooks.example.com/a/b",
		"https://u:p@hooks.example.com:8443/a?x=1&y=2":   "https://hooks.example.com:8443/a?x=REDACTED&y=REDACTED",
		"https://u@h/p?token":                            "https://h/p?REDACTED",
		"http://h/?a=1&&b=#frag=secret":                  "http://h/?a=REDACTED&&b=REDACTED",
		"http://h/p?sig=a%3Db":                           "http://h/p?sig=REDACTED",
		"http://h/p?":                                    "http://h/p",
		"mailto:someone@example.com":                     "mailto:REDACTED",
		"http://[::1]:namedport/x?secret=1":              "(unparsable URL)",
		"https://user:pa%40ss@h.example/w?api_key=k&v=2": "https://h.example/w?api_key=REDACTED&v=REDACTED",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
