package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// barWidth is the number of cells in the progress bar.
const barWidth = 20

// progressLine redraws one line of --wait progress on a terminal, e.g.
//
//	[############........] 640/1000 jobs finished · 600 succeeded · 40 failed · 12s left
//
// Each draw starts with "\r" and pads over what the last one left; end moves
// to the next line. A nil *progressLine draws nothing.
type progressLine struct {
	w   io.Writer
	now func() time.Time

	start time.Time // first draw
	base  int       // jobs finished at the first draw
	width int       // runes on screen: the longest draw so far
	drawn bool
}

func newProgressLine(w io.Writer, now func() time.Time) *progressLine {
	return &progressLine{w: w, now: now}
}

// draw redraws the line for t, with the time left estimated from the
// rate since the first draw.
func (p *progressLine) draw(t tally) {
	if p == nil {
		return
	}
	now := p.now()
	if !p.drawn {
		p.start, p.base = now, t.done()
	}
	p.drawLeft(t, estimateLeft(t, p.base, now.Sub(p.start)))
}

// drawLeft redraws the line for t with left as the time left (< 0: unknown).
func (p *progressLine) drawLeft(t tally, left time.Duration) {
	if p == nil {
		return
	}
	p.drawn = true
	text := renderProgress(t, left)
	n := len([]rune(text))
	pad := ""
	if n < p.width {
		pad = strings.Repeat(" ", p.width-n)
	}
	p.width = max(n, p.width)
	fmt.Fprint(p.w, "\r"+text+pad)
}

// end finishes the line so that what follows starts on its own.
func (p *progressLine) end() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\n")
	}
}

// renderProgress is the text of the progress line; left < 0 means no
// estimate yet, and nothing is said about time once every job has finished.
func renderProgress(t tally, left time.Duration) string {
	filled := 0
	if t.total > 0 {
		filled = t.done() * barWidth / t.total
	}
	var s strings.Builder
	s.WriteByte('[')
	s.WriteString(strings.Repeat("#", filled))
	s.WriteString(strings.Repeat(".", barWidth-filled))
	fmt.Fprintf(&s, "] %d/%d jobs finished · %d succeeded · %d failed", t.done(), t.total, t.succeeded, t.failed)
	switch {
	case t.done() >= t.total:
	case left < 0:
		s.WriteString(" · estimating time left")
	default:
		s.WriteString(" · " + formatLeft(left) + " left")
	}
	return s.String()
}

// estimateLeft extrapolates the rate since the first draw, when base jobs
// had finished, to the jobs still open; -1 until at least one job has
// finished since and a second has passed.
func estimateLeft(t tally, base int, elapsed time.Duration) time.Duration {
	finished := t.done() - base
	if finished <= 0 || elapsed < time.Second {
		return -1
	}
	return time.Duration(float64(elapsed) * float64(t.total-t.done()) / float64(finished))
}

// formatLeft writes d rounded up to seconds the short way: 12s, 3m05s, 1h02m.
func formatLeft(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	switch {
	case secs < 60:
		return fmt.Sprintf("%ds", secs)
	case secs < 3600:
		return fmt.Sprintf("%dm%02ds", secs/60, secs%60)
	}
	return fmt.Sprintf("%dh%02dm", secs/3600, secs%3600/60)
}
