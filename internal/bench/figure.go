package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// figure is one row of the table with what backs it.
type figure struct {
	ID   string // "1", "2", …, "conn", "sign"
	Name string
	// Zhimaq and Reference are the medians over the rounds, as text.
	Zhimaq, Reference string
	// Ratio is the median of the per-round ratios zhimaq / reference.
	Ratio float64
	// Target describes the goal; met reports whether Ratio reaches it (nil:
	// information only).
	Target string
	Met    *bool
	// Raw holds the per-round numbers; How says how they were measured;
	// Why explains a missed target from what was measured.
	Raw  []string
	How  string
	Why  []string
	Skip string // set when the figure could not be measured
}

func (f *figure) check(ok bool) { f.Met = &ok }

func (f *figure) metText() string {
	switch {
	case f.Skip != "":
		return "skipped"
	case f.Met == nil:
		return "info"
	case *f.Met:
		return "yes"
	}
	return "**no**"
}

func (f *figure) ratioText() string {
	if f.Skip != "" || f.Ratio == 0 || math.IsNaN(f.Ratio) {
		return "—"
	}
	return fmt.Sprintf("%.3f×", f.Ratio)
}

// rawf adds a line of raw numbers.
func (f *figure) rawf(format string, a ...any) { f.Raw = append(f.Raw, fmt.Sprintf(format, a...)) }

// whyf adds a line to the explanation of a missed target.
func (f *figure) whyf(format string, a ...any) { f.Why = append(f.Why, fmt.Sprintf(format, a...)) }

// list formats xs with format, comma-separated.
func list(format string, xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// dur formats a duration given in seconds with three significant digits.
func dur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", sec)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3g ms", sec*1e3)
	}
	return fmt.Sprintf("%.3g µs", sec*1e6)
}

// table renders the figures as the Markdown table of the report.
func table(figs []*figure) string {
	var b strings.Builder
	b.WriteString("| figure | zhimaq | reference | ratio | target | met |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, f := range figs {
		z, r := f.Zhimaq, f.Reference
		if f.Skip != "" {
			z, r = "—", "—"
		}
		fmt.Fprintf(&b, "| %s. %s | %s | %s | %s | %s | %s |\n", f.ID, f.Name, z, r, f.ratioText(), f.Target, f.metText())
	}
	return b.String()
}
