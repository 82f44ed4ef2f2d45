//! Small bar charts as SVG, for the web page's `/stats` (server-rendered, no script, no
//! inline style, which the page's CSP forbids: colours are SVG presentation attributes).

use std::fmt::Write as _;

/// One bar: its label (a bucket's start date) and value (`None`: no data, no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    /// The value as text (the bar's tooltip).
    pub text: String,
}

const W: f64 = 320.0;
const H: f64 = 120.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 18.0;
/// The ticks' text: the page's text colour, small.
const TEXT: &str = "fill=\"currentColor\" font-size=\"10\"";

use crate::pool::markup::esc;

/// A bar chart of `bars` (oldest first) titled `title`; `class` names the metric, `fill`
/// is the bars' colour (`#rrggbb`). Bars scale to the largest value; a missing value
/// draws a grey dash on the axis.
pub fn bars(title: &str, class: &str, fill: &str, bars: &[Bar]) -> String {
    let fill = esc(fill);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart {}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(class),
        esc(title),
        esc(title)
    );
    let plot = H - TOP - BOTTOM;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"0\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" \
         stroke=\"currentColor\" stroke-opacity=\"0.4\"/>",
        y = H - BOTTOM
    );
    let max = bars
        .iter()
        .filter_map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let n = bars.len().max(1) as f64;
    let slot = W / n;
    let width = (slot * 0.7).max(1.0);
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64 * slot + (slot - width) / 2.0;
        match b.value.filter(|v| v.is_finite() && *v >= 0.0) {
            Some(v) => {
                let h = if max > 0.0 { v / max * plot } else { 0.0 };
                // A zero still shows: a one-pixel bar.
                let h = h.max(1.0);
                let _ = write!(
                    out,
                    "<rect class=\"bar\" fill=\"{fill}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" \
                     height=\"{h:.1}\"><title>{}: {}</title></rect>",
                    H - BOTTOM - h,
                    esc(&b.label),
                    esc(&b.text)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<rect class=\"none\" fill=\"#8c959f\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" \
                     height=\"1\"><title>{}: no data</title></rect>",
                    H - BOTTOM - 1.0,
                    esc(&b.label)
                );
            }
        }
    }
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"0\" y=\"{y}\" {TEXT}>{}</text>\
             <text class=\"tick end\" x=\"{W}\" y=\"{y}\" text-anchor=\"end\" {TEXT}>{}</text>",
            esc(&first.label),
            esc(&last.label),
            y = H - 4.0
        );
    }
    let _ = write!(
        out,
        "<text class=\"tick\" x=\"0\" y=\"10\" {TEXT}>max {}</text></svg>",
        esc(&bars
            .iter()
            .filter(|b| b.value.is_some_and(|v| v == max))
            .map(|b| b.text.clone())
            .next()
            .unwrap_or_else(|| "-".into()))
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_their_text() {
        let svg = bars(
            "Deployments <per week>",
            "deploys",
            "#2da44e",
            &[
                Bar {
                    label: "w1".into(),
                    value: Some(2.0),
                    text: "2".into(),
                },
                Bar {
                    label: "w2".into(),
                    value: None,
                    text: String::new(),
                },
                Bar {
                    label: "w\"3".into(),
                    value: Some(4.0),
                    text: "4".into(),
                },
                Bar {
                    label: "w4".into(),
                    value: Some(0.0),
                    text: "0".into(),
                },
            ],
        );
        assert!(svg.starts_with("<svg class=\"chart deploys\""));
        assert!(svg.contains("<title>Deployments &lt;per week&gt;</title>"));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert_eq!(svg.matches("<rect class=\"none\"").count(), 1);
        // The plot is 88 high: 4 is the full height, 2 half of it, 0 one pixel.
        assert!(
            svg.contains("height=\"88.0\"><title>w&quot;3: 4</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("height=\"44.0\"><title>w1: 2</title>"),
            "{svg}"
        );
        assert!(svg.contains("height=\"1.0\"><title>w4: 0</title>"), "{svg}");
        assert!(svg.contains(">max 4</text>"));
        assert!(
            svg.contains("<rect class=\"bar\" fill=\"#2da44e\""),
            "{svg}"
        );
        assert!(!svg.contains("style"));
        assert!(svg.ends_with("</svg>"));
        // No bars at all is still a chart.
        let empty = bars("t", "c", "#000000", &[]);
        assert!(empty.contains("max -") && empty.ends_with("</svg>"));
    }
}
