package netguard

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url    string
		detail string // "" accepted
	}{
		{"https://example.com/hook", ""},
		{"http://example.com:8080/x?y=1", ""},
		{"HTTPS://Example.COM/", ""},
		{"http://user:pw@example.com/", ""},
		{"http://127.0.0.1/", ""}, // spelled canonically: the dialer decides
		{"http://[::1]:80/", ""},
		{"ftp://example.com/", "scheme"},
		{"file:///etc/passwd", "scheme"},
		{"gopher://example.com/", "scheme"},
		{"javascript:alert(1)", "scheme"},
		{"data:image/png;base64,AAAA", "scheme"},
		{"//example.com/x", "scheme"},
		{"example.com/x", "scheme"},
		{"http:example.com", "no host"},
		{"http:///x", "no host"},
		{"http://:80/x", "no host"},
		{"http://example.com:0/", "port"},
		{"http://example.com:65536/", "port"},
		{"http://exa mple.com/", "not a valid URL"},
		{"http://0x7f000001/", "non-standard"},
		{"http://0X7F000001/", "non-standard"},
		{"http://2130706433/", "non-standard"},
		{"http://0177.0.0.1/", "non-standard"},
		{"http://0177.0.0.01/", "non-standard"},
		{"http://127.1/", "non-standard"},
		{"http://127.0.1/", "non-standard"},
		{"http://0x7f.0.0.1/", "non-standard"},
		{"http://127.0.0.1./", "non-standard"},
		{"http://0/", "non-standard"},
		{"http://017700000001/", "non-standard"},
		{"http://1.2.3.4.5/", ""}, // five parts is a name to every resolver
		{"http://123.example/", ""},
		{"http://example.com/" + strings.Repeat("a", MaxURLLength), "longer than"},
	} {
		u, err := CheckURL(tc.url)
		if tc.detail == "" {
			if err != nil || u == nil {
				t.Errorf("%q refused: %v", tc.url, err)
			}
			continue
		}
		var ge *Error
		if !errors.As(err, &ge) || !errors.Is(err, ErrBadURL) || !strings.Contains(ge.Reason(), tc.detail) {
			t.Errorf("%q: error %v, want bad URL %q", tc.url, err, tc.detail)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://example.com/hook", "https://example.com/hook"},
		{"https://user:secret@example.com/hook", "https://example.com/hook"},
		{"https://user@example.com/", "https://example.com/"},
		{"https://example.com/x?token=abc&b=2", "https://example.com/x?token=REDACTED&b=REDACTED"},
		{"https://example.com/x?token=", "https://example.com/x?token=REDACTED"},
		{"https://example.com/x?abc123secret", "https://example.com/x?REDACTED"},
		{"https://example.com/x?a=1&&b", "https://example.com/x?a=REDACTED&&REDACTED"},
		{"https://example.com/x?sig=a%3Db#frag-token", "https://example.com/x?sig=REDACTED"},
		{"data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,… (34 bytes)"},
		{"DATA:,hello", "data:,… (11 bytes)"},
		{"http://exa mple.com/?token=x", "(unparsable URL)"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestErrorsNeverShowSecrets: Reason and Error of a failed fetch carry
// neither the credentials nor the query values of the URL.
func TestErrorsNeverShowSecrets(t *testing.T) {
	_, err := CheckURL("ftp://alice:hunter2@example.com/?token=s3cret")
	if err == nil {
		t.Fatal("accepted")
	}
	var ge *Error
	errors.As(err, &ge)
	for _, s := range []string{err.Error(), ge.Reason()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") || strings.Contains(s, "alice") {
			t.Errorf("secret in %q", s)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{1000: "1000 bytes", 1024: "1 KiB", 20 << 20: "20 MiB", 3 << 30: "3 GiB", 1536: "1536 bytes"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
