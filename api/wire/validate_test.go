package wire

import "testing"

func TestJavaLen(t *testing.T) {
	for s, want := range map[string]int{"": 0, "abc": 3, "é": 1, "日本": 2, "😀": 2} {
		if got := JavaLen(s); got != want {
			t.Errorf("javaLen(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestValidTagText: white space is Unicode category Z only.
func TestValidTagText(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"ü0 _./=+-@%:", true},
		{"", true},
		{"a\u00a0b\u2003c\u2028d\u2029", true}, // Zs, Zl, Zp
		{"a\tb", false},
		{"a\nb", false},
		{"a\rb", false},
		{"a\vb", false},
		{"a\u0085b", false}, // NEL: space to unicode.IsSpace, not category Z
		{"a#b", false},
		{"\xff", false},
	}
	for _, tc := range tests {
		if got := ValidTagText(tc.s); got != tc.want {
			t.Errorf("ValidTagText(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
