//! Hand-written SVG plots: grouped horizontal bars (boot times, basic
//! costs, STREAM rates) and log2 gap histograms (hourglass). No plotting
//! library: a few rectangles and text elements are all these need.

use std::fmt::Write as _;

/// Series colours, one per platform (colour-blind friendly palette).
const COLOURS: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
];

/// Escapes text for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Formats a value with about three significant digits.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A group of bars: a label and one value per series (`None`: no figure).
pub type Group = (String, Vec<Option<f64>>);

/// Grouped horizontal bars on a logarithmic axis (the figures here span
/// several orders of magnitude). `series` names the bars of every group.
pub fn bars(title: &str, unit: &str, series: &[String], groups: &[Group]) -> String {
    let label_w = 230.0;
    let plot_w = 520.0;
    let bar_h = 12.0;
    let group_gap = 10.0;
    let top = 60.0 + 16.0 * series.len().div_ceil(3) as f64;
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().flatten().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let (lo, hi) = match (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        ),
        _ => (0.0, 1.0),
    };
    let x = |v: f64| label_w + (v.log10() - lo) / (hi - lo) * plot_w;
    let group_h = series.len() as f64 * bar_h + group_gap;
    let height = top + groups.len() as f64 * group_h + 40.0;
    let width = label_w + plot_w + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(s, r#"<text x="10" y="36">{} (log scale)</text>"#, esc(unit));
    for (i, name) in series.iter().enumerate() {
        let lx = 10.0 + (i % 3) as f64 * 220.0;
        let ly = 46.0 + (i / 3) as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{ly}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            lx + 14.0,
            ly + 9.0,
            esc(name)
        );
    }
    let axis_bottom = top + groups.len() as f64 * group_h;
    let mut decade = lo;
    while decade <= hi {
        let gx = x(10f64.powf(decade));
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="{top}" x2="{gx}" y2="{axis_bottom}" stroke="#ddd"/><text x="{gx}" y="{}" text-anchor="middle">{}</text>"##,
            axis_bottom + 14.0,
            short(10f64.powf(decade))
        );
        decade += 1.0;
    }
    for (g, (label, vals)) in groups.iter().enumerate() {
        let gy = top + g as f64 * group_h;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            gy + group_h / 2.0,
            esc(label)
        );
        for (i, v) in vals.iter().enumerate() {
            let by = gy + i as f64 * bar_h;
            match v {
                Some(v) if *v > 0.0 => {
                    let w = (x(*v) - label_w).max(1.0);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{label_w}" y="{by}" width="{w:.1}" height="{}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{}">{}</text>"#,
                        bar_h - 2.0,
                        COLOURS[i % COLOURS.len()],
                        esc(series.get(i).map_or("", String::as_str)),
                        short(*v),
                        label_w + w + 3.0,
                        by + bar_h - 3.0,
                        short(*v)
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{}" y="{}" fill="#888">-</text>"##,
                        label_w + 3.0,
                        by + bar_h - 3.0
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One histogram panel per platform: the share of gaps in each log2
/// bucket (bucket `k`: gaps in `[2^k, 2^(k+1))` cycles), log scale.
pub fn histograms(title: &str, panels: &[(String, Vec<u64>)]) -> String {
    let first = panels
        .iter()
        .filter_map(|p| p.1.iter().position(|&n| n > 0))
        .min()
        .unwrap_or(0);
    let last = panels
        .iter()
        .filter_map(|p| p.1.iter().rposition(|&n| n > 0))
        .max()
        .unwrap_or(first);
    let buckets = last - first + 1;
    let left = 60.0;
    let bar_w = (600.0 / buckets as f64).min(30.0);
    let panel_h = 120.0;
    let width = left + bar_w * buckets as f64 + 40.0;
    let height = 40.0 + panels.len() as f64 * (panel_h + 40.0);
    // Shares from 1e-7 to 1 over the panel height.
    let decades = 7.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="10">"#,
        width.max(400.0)
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (p, (name, counts)) in panels.iter().enumerate() {
        let py = 40.0 + p as f64 * (panel_h + 40.0);
        let base = py + panel_h;
        let total: u64 = counts.iter().sum();
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-weight="bold">{} ({} gaps)</text>"#,
            py - 4.0,
            esc(name),
            total
        );
        for d in 0..=decades as i32 {
            let gy = base - f64::from(d) / decades * panel_h;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{gy}" x2="{}" y2="{gy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">1e-{}</text>"##,
                left + bar_w * buckets as f64,
                left - 4.0,
                gy + 3.0,
                decades as i32 - d
            );
        }
        for k in first..=last {
            let bx = left + (k - first) as f64 * bar_w;
            let n = counts.get(k).copied().unwrap_or(0);
            if n > 0 && total > 0 {
                let share = n as f64 / total as f64;
                let h = ((share.log10() + decades) / decades * panel_h).clamp(1.0, panel_h);
                let _ = writeln!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>2^{k}: {n} gaps</title></rect>"#,
                    base - h,
                    bar_w - 1.0,
                    COLOURS[p % COLOURS.len()]
                );
            }
            if (k - first) % 2 == 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{}" text-anchor="middle">2^{k}</text>"#,
                    bx + bar_w / 2.0,
                    base + 12.0
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="{}">gap between two TSC reads, cycles (log2 buckets); share of all gaps (log scale)</text>"#,
        height - 6.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balanced(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        for tag in ["rect", "text", "title"] {
            let open = svg.matches(&format!("<{tag}")).count();
            let closed = svg.matches(&format!("</{tag}>")).count() + svg.matches("/>").count();
            assert!(closed >= open, "{tag}: {open} opened");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn bars_draw_every_value_and_dash_for_missing() {
        let svg = bars(
            "boot <hello>",
            "ms",
            &["native".into(), "uhyve".into()],
            &[
                ("a & b".into(), vec![Some(0.5), Some(7.0)]),
                ("c".into(), vec![Some(106.0), None]),
            ],
        );
        balanced(&svg);
        assert!(svg.contains("boot &lt;hello&gt;"));
        assert!(svg.contains("a &amp; b"));
        for v in ["0.50", "7.00", "106"] {
            assert!(svg.contains(&format!(">{v}</text>")), "{v}: {svg}");
        }
        assert!(svg.contains(">-</text>"));
    }

    #[test]
    fn bars_without_values_still_draw() {
        balanced(&bars("t", "u", &["x".into()], &[("g".into(), vec![None])]));
    }

    #[test]
    fn histograms_show_each_panel() {
        let mut a = vec![0u64; 64];
        a[5] = 1000;
        a[17] = 3;
        let mut b = vec![0u64; 64];
        b[15] = 10;
        let svg = histograms("hourglass", &[("native".into(), a), ("uhyve".into(), b)]);
        balanced(&svg);
        assert!(svg.contains("native (1003 gaps)"));
        assert!(svg.contains("uhyve (10 gaps)"));
        assert!(svg.contains("2^17: 3 gaps"));
        assert!(svg.contains(">2^5</text>"));
    }
}
