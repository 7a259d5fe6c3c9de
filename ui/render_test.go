package ui

import "testing"

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"\u003cscript\u003e"`:  `"<script>"`,
		`"a \u0026 b"`:          `"a & b"`,
		`"\\u003c"`:             `"\\u003c"`, // an escaped backslash, then text
		`"\\\u003c"`:            `"\\<"`,
		`"\u00e9 \n \" \u003E"`: `"\u00e9 \n \" >"`,
		`plain`:                 `plain`,
		`"\u003`:                `"\u003`,
	} {
		if got := unescapeHTML(in); got != want {
			t.Errorf("unescapeHTML(%s) = %s, want %s", in, got, want)
		}
	}
}
