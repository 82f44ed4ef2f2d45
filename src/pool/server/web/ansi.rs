//! ANSI colours (SGR escape sequences) to HTML spans. Every piece of text goes through
//! [`super::html::esc`]; other escape sequences (cursor moves, OSC titles and links) and
//! control characters are dropped. Colours become classes (`f0`–`f255`, `b0`–`b255`,
//! defined in [`css`]) rather than inline styles, so the page's CSP can forbid inline
//! styles.

use super::html::esc;
use std::fmt::Write as _;

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Style {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn classes(&self) -> String {
        let mut c = Vec::new();
        if let Some(f) = self.fg {
            c.push(format!("f{f}"));
        }
        if let Some(b) = self.bg {
            c.push(format!("b{b}"));
        }
        if self.bold {
            c.push("ab".into());
        }
        if self.dim {
            c.push("ad".into());
        }
        if self.italic {
            c.push("ai".into());
        }
        if self.underline {
            c.push("au".into());
        }
        c.join(" ")
    }

    fn apply(&mut self, params: &[u16]) {
        let mut i = 0;
        let ps: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            params.to_vec()
        };
        while i < ps.len() {
            let p = ps[i];
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((p - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((p - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((p - 90 + 8) as u8),
                100..=107 => self.bg = Some((p - 100 + 8) as u8),
                38 | 48 => {
                    let colour = match ps.get(i + 1) {
                        Some(5) => {
                            let c = ps.get(i + 2).map(|&c| c.min(255) as u8);
                            i += 2;
                            c
                        }
                        Some(2) => {
                            let rgb = (ps.get(i + 2), ps.get(i + 3), ps.get(i + 4));
                            i += 4;
                            match rgb {
                                (Some(&r), Some(&g), Some(&b)) => {
                                    Some(nearest(r.min(255), g.min(255), b.min(255)))
                                }
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    if p == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// The xterm 256-colour index nearest to an RGB colour (cube or grey ramp).
fn nearest(r: u16, g: u16, b: u16) -> u8 {
    let level = |v: u16| -> u16 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    let (lr, lg, lb) = (level(r), level(g), level(b));
    let cube = 16 + 36 * lr + 6 * lg + lb;
    let avg = (r + g + b) / 3;
    if lr == lg && lg == lb && avg > 4 && avg < 247 {
        let grey = 232 + ((avg.saturating_sub(8)) / 10).min(23);
        return grey as u8;
    }
    cube.min(255) as u8
}

/// One line of build output as HTML: escaped text in spans for its colours. A carriage
/// return keeps what follows it (a progress bar's last state).
pub fn to_html(line: &str) -> String {
    let line = match line.rfind('\r') {
        Some(i) if i + 1 < line.len() => &line[i + 1..],
        Some(_) => line.trim_end_matches('\r'),
        None => line,
    };
    let mut out = String::with_capacity(line.len() + 16);
    let mut style = Style::default();
    let mut text = String::new();
    let flush = |out: &mut String, text: &mut String, style: &Style| {
        if text.is_empty() {
            return;
        }
        if *style == Style::default() {
            out.push_str(&esc(text));
        } else {
            let _ = write!(
                out,
                "<span class=\"{}\">{}</span>",
                style.classes(),
                esc(text)
            );
        }
        text.clear();
    };
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut fin = None;
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            fin = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    if fin == Some('m') {
                        let ps: Vec<u16> = params
                            .split([';', ':'])
                            .map(|p| p.parse::<u16>().unwrap_or(0))
                            .collect();
                        let mut next = style;
                        next.apply(if params.is_empty() { &[] } else { &ps });
                        if next != style {
                            flush(&mut out, &mut text, &style);
                            style = next;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => text.push('\t'),
            c if c.is_control() => {}
            c => text.push(c),
        }
    }
    flush(&mut out, &mut text, &style);
    out
}

/// The line without its escape sequences and control characters (the text download).
pub fn strip(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if let Some('[') = chars.next() {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// The colour classes' CSS (the 16 base colours, the 6×6×6 cube, the grey ramp).
pub fn css() -> String {
    const BASE: [&str; 16] = [
        "#3b3b3b", "#cd3131", "#0dbc79", "#c9a000", "#2472c8", "#bc3fbc", "#11a8cd", "#c8c8c8",
        "#767676", "#f14c4c", "#23d18b", "#e5e510", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
    ];
    let mut css = String::new();
    let colour = |n: usize| -> String {
        if n < 16 {
            BASE[n].to_string()
        } else if n < 232 {
            let i = n - 16;
            let v = |x: usize| if x == 0 { 0 } else { 55 + 40 * x };
            format!("#{:02x}{:02x}{:02x}", v(i / 36), v((i / 6) % 6), v(i % 6))
        } else {
            let g = 8 + 10 * (n - 232);
            format!("#{g:02x}{g:02x}{g:02x}")
        }
    };
    for n in 0..256 {
        let c = colour(n);
        let _ = writeln!(css, ".f{n}{{color:{c}}}.b{n}{{background:{c}}}");
    }
    css.push_str(".ab{font-weight:bold}.ad{opacity:.7}.ai{font-style:italic}.au{text-decoration:underline}\n");
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_become_classes_and_text_is_escaped() {
        assert_eq!(
            to_html("\u{1b}[31mred <b>\u{1b}[0m plain"),
            "<span class=\"f1\">red &lt;b&gt;</span> plain"
        );
        assert_eq!(
            to_html("\u{1b}[1;38;5;202mx\u{1b}[m"),
            "<span class=\"f202 ab\">x</span>"
        );
        assert_eq!(to_html("a\u{1b}[2Kb\u{7}c"), "abc");
        assert_eq!(to_html("10%\r50%\r100%"), "100%");
        assert_eq!(
            to_html("\u{1b}]8;;http://x\u{1b}\\link"),
            "link",
            "OSC hyperlinks are dropped"
        );
        assert_eq!(strip("\u{1b}[32mok\u{1b}[0m"), "ok");
    }
}
