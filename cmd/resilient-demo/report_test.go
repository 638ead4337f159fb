package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium returns the path of a Chromium binary, or "" when none is
// installed (Debian: apt-get install chromium).
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// headless runs Chromium without a display, a sandbox, a network or a
// profile of its own beyond dir, and returns its standard output.
func headless(t *testing.T, bin, dir string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "profile")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", stderr.String())
	return out
}

// TestReportInChromium renders the report of the default scenario (run in
// memory) in headless Chromium at 700px wide: nothing is wider than the
// window, and the screenshot shows the page. It is skipped when Chromium
// is not installed.
func TestReportInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("chromium is not installed (Debian: apt-get install chromium)")
	}
	if testing.Short() {
		t.Skip("starts a browser")
	}
	var page bytes.Buffer
	synctest.Test(t, func(t *testing.T) {
		cfg, err := parseFlags(nil, io.Discard)
		require.NoError(t, err)
		cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
		f, err := scenario(context.Background(), cfg, nil, false)
		require.NoError(t, err)
		require.NoError(t, writeHTML(&page, f))
	})
	dir := t.TempDir()

	// The page's width as Chromium lays it out: a copy of the page with a
	// script that writes it into the title, read back from the DOM.
	measure := filepath.Join(dir, "measure.html")
	probe := strings.Replace(page.String(), "</body>",
		"<script>document.title = 'scrollWidth=' + document.documentElement.scrollWidth</script></body>", 1)
	require.NoError(t, os.WriteFile(measure, []byte(probe), 0o644))
	dom := headless(t, bin, dir, "--window-size=700,1200", "--dump-dom", "file://"+measure)
	m := regexp.MustCompile(`scrollWidth=(\d+)`).FindSubmatch(dom)
	require.NotNil(t, m, "the script ran: %.300s", dom)
	width, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	assert.LessOrEqual(t, width, 700, "nothing wider than a 700px window")

	report, shot := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.png")
	require.NoError(t, os.WriteFile(report, page.Bytes(), 0o644))
	headless(t, bin, dir, "--window-size=700,2000", "--screenshot="+shot, "file://"+report)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 700, 2000), img.Bounds())
	// The page drew something: a good share of the pixels are not white.
	inked := 0
	for y := 0; y < 2000; y += 4 {
		for x := 0; x < 700; x += 4 {
			if r, g, b, _ := img.At(x, y).RGBA(); r < 0xf000 || g < 0xf000 || b < 0xf000 {
				inked++
			}
		}
	}
	assert.Greater(t, inked, 700*2000/16/20, "at least 5% of the page is drawn")
}
