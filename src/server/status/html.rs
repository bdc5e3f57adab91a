//! The status page as HTML: one table, inline CSS, inline SVG, no script.
//!
//! Readable without colour: the traffic bar has its split in words beside it and as its
//! accessible name, each step says `done`/`current`/`next`/`failed` in text, a number over its
//! limit says so, and the chart's two revisions differ by line style and marker as well as
//! colour, each chart carrying a title and a description in words. Every CSS rule that sets a
//! text colour sets its background too, so the contrast of each pair can be checked (the test
//! in `tests/e2e/status_page.rs` computes the WCAG ratio of each).

use std::fmt::Write as _;

use super::{Chart, LastJudged, Problem, Rollout, Series, StatusPage};

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:1.5rem;color:#1a1a1a;background:#ffffff}
h1{font-size:1.4rem;margin:0 0 .25rem}
.meta{color:#4d4d4d;background:#ffffff;margin:0 0 1rem}
table{border-collapse:collapse;width:100%}
caption{text-align:left;font-weight:600;padding:.25rem 0;color:#1a1a1a;background:#ffffff}
th,td{border-bottom:1px solid #d0d5dc;padding:.5rem;vertical-align:top;text-align:left}
thead th{color:#1a1a1a;background:#e8ebef}
.muted{color:#4d4d4d;background:#ffffff;font-size:.85rem}
code{color:#1a1a1a;background:#f3f4f6;font-size:.85rem}
.phase{color:#ffffff;background:#1f5fa8;border-radius:3px;padding:0 .4rem;white-space:nowrap}
.phase-paused{color:#1a1a1a;background:#f2c94c}
.phase-rolled-back{color:#ffffff;background:#a61b1b}
.phase-completed{color:#ffffff;background:#2e6b30}
.phase-baking{color:#ffffff;background:#5b3f8c}
.bar{display:flex;width:12rem;height:.9rem;border:1px solid #5c6670}
.bar-candidate{background:#1f5fa8}
.bar-stable{background:repeating-linear-gradient(45deg,#c9d1da 0 4px,#e8ebef 4px 8px)}
.bar-text{margin:.25rem 0 0;font-size:.85rem;color:#1a1a1a;background:#ffffff}
.steps{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem}
.steps li{border:1px solid #5c6670;border-radius:3px;padding:0 .35rem;font-size:.85rem}
.step-done{color:#1d5e20;background:#ffffff}
.step-current{color:#ffffff;background:#1f5fa8}
.step-next{color:#4d4d4d;background:#ffffff}
.step-failed{color:#ffffff;background:#a61b1b}
.within{color:#1d5e20;background:#ffffff}
.over{color:#a61b1b;background:#ffffff;font-weight:600}
.problem td,.problem th{color:#8a1010;background:#fdecec}
.chart{color:#333333;background:#ffffff}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0}
figcaption{font-size:.85rem;font-weight:600;color:#333333;background:#ffffff}
.legend{font-size:.85rem;margin:.25rem 0;color:#333333;background:#ffffff}
a{color:#1a4f8b;background:#ffffff}
";

/// `s` safe inside HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

/// `HH:MM` of a time, UTC.
fn hhmm(t: jiff::Timestamp) -> String {
    t.strftime("%H:%M").to_string()
}

/// The whole page.
pub fn render(page: &StatusPage) -> String {
    let mut h = String::new();
    let active = page.rollouts.iter().filter(|r| r.active).count();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>cutover: rollouts in {project}</title><style>{CSS}</style></head><body>\
         <header><h1>cutover rollouts</h1><p class=\"meta\">Project <strong>{project}</strong> · \
         regions {regions} · as of {at} UTC · <a href=\"status.json\">as JSON</a></p></header><main>",
        project = esc(&page.project),
        regions = esc(&page.regions.join(", ")),
        at = esc(&page.generated_at.strftime("%Y-%m-%d %H:%M:%S").to_string()),
    );
    if page.rollouts.is_empty() && page.problems.is_empty() {
        h.push_str("<p>No rollout yet: no service in these regions has a cutover record.</p>");
    } else {
        let _ = write!(
            h,
            "<table><caption>{active} active, {done} finished</caption><thead><tr>\
             <th scope=\"col\">Service</th><th scope=\"col\">Phase</th>\
             <th scope=\"col\">Revisions</th><th scope=\"col\">Traffic</th>\
             <th scope=\"col\">Steps</th><th scope=\"col\">Last judged step</th></tr></thead><tbody>",
            done = page.rollouts.len() - active,
        );
        for p in &page.problems {
            problem(&mut h, p);
        }
        for (i, r) in page.rollouts.iter().enumerate() {
            rollout(&mut h, r, i);
        }
        h.push_str("</tbody></table>");
    }
    let n = &page.notifications;
    let _ = write!(
        h,
        "<p class=\"meta\">This instance since it started: {} lifecycle events published, {} lost; \
         {} chat messages sent, {} lost.</p>",
        n.events.delivered, n.events.lost, n.chat.delivered, n.chat.lost
    );
    h.push_str("</main></body></html>\n");
    h
}

fn problem(h: &mut String, p: &Problem) {
    let what = p.service.as_deref().unwrap_or("every service");
    let _ = write!(
        h,
        "<tr class=\"problem\"><th scope=\"row\">{what}<br>{region}</th>\
         <td colspan=\"5\">Cannot be shown: {error}</td></tr>",
        what = esc(what),
        region = esc(&p.region),
        error = esc(&p.error),
    );
}

fn rollout(h: &mut String, r: &Rollout, i: usize) {
    let row = &r.row;
    let phase_class = row.phase.split_whitespace().next().unwrap_or("none");
    let _ = write!(
        h,
        "<tr><th scope=\"row\">{service}<br><span class=\"muted\">{region}</span></th>\
         <td><span class=\"phase phase-{phase_class}\">{phase}</span><br>\
         <span class=\"muted\">{reason}</span></td>\
         <td>candidate <code>{candidate}</code><br>stable <code>{stable}</code></td><td>",
        service = esc(&row.service),
        region = esc(&row.region),
        phase_class = esc(phase_class),
        phase = esc(&row.phase),
        reason = esc(row.reason.as_deref().unwrap_or("")),
        candidate = esc(row.candidate.as_deref().unwrap_or("-")),
        stable = esc(row.stable.as_deref().unwrap_or("-")),
    );
    traffic(h, r);
    h.push_str("</td><td><ol class=\"steps\">");
    for s in &r.steps {
        let _ = write!(
            h,
            "<li class=\"step-{state}\">{label} <span class=\"state\">{state}</span></li>",
            state = s.state.as_str(),
            label = esc(&s.label),
        );
    }
    h.push_str("</ol></td><td>");
    match &r.last_judged {
        Some(j) => judged(h, j),
        None => h.push_str("<span class=\"muted\">not judged yet</span>"),
    }
    h.push_str("</td></tr>");
    if let Some(c) = &r.chart {
        let _ = write!(
            h,
            "<tr class=\"chart-row\"><td colspan=\"6\" class=\"chart\">"
        );
        chart(h, c, r, i);
        h.push_str("</td></tr>");
    }
}

/// The candidate's and stable's shares as a bar, with the same in words.
fn traffic(h: &mut String, r: &Rollout) {
    let share = |rev: &Option<String>| {
        rev.as_ref()
            .and_then(|rev| r.row.traffic.get(rev).copied())
            .unwrap_or(0)
    };
    let candidate = share(&r.row.candidate);
    let stable = share(&r.row.stable);
    let other = 100u8.saturating_sub(candidate).saturating_sub(stable);
    let mut words = format!("candidate {candidate}% · stable {stable}%");
    if other > 0 {
        let _ = write!(words, " · other revisions {other}%");
    }
    let _ = write!(
        h,
        "<div class=\"bar\" role=\"img\" aria-label=\"Traffic: {label}\">\
         <span class=\"bar-candidate\" style=\"width:{candidate}%\"></span>\
         <span class=\"bar-stable\" style=\"width:{stable}%\"></span></div>\
         <p class=\"bar-text\">{words}</p>",
        label = esc(&words),
        words = esc(&words),
    );
}

/// The last judged step's numbers against its limits.
fn judged(h: &mut String, j: &LastJudged) {
    let verdict = |ok: bool| {
        if ok {
            "<span class=\"within\">within</span>"
        } else {
            "<span class=\"over\">over the limit</span>"
        }
    };
    let _ = write!(
        h,
        "{decision} at {at}<br>{n} requests (needs {min}) {enough}<br>\
         5xx {rate} (limit {max_rate}) {rate_ok}<br>",
        decision = esc(&j.decision),
        at = hhmm(j.at),
        n = j.requests,
        min = j.min_requests,
        enough = if j.requests >= j.min_requests {
            "<span class=\"within\">enough</span>"
        } else {
            "<span class=\"over\">too few</span>"
        },
        rate = pct(j.error_rate),
        max_rate = pct(j.max_error_rate),
        rate_ok = verdict(j.error_rate <= j.max_error_rate),
    );
    match j.p99_ms {
        Some(p) => {
            let _ = write!(
                h,
                "p99 {} (limit {}) {}",
                ms(p),
                ms(j.max_p99_ms),
                verdict(p <= j.max_p99_ms)
            );
        }
        None => {
            let _ = write!(h, "p99 unknown (limit {})", ms(j.max_p99_ms));
        }
    }
}

/// Size of one chart's drawing area, and its margins for the axis labels.
const W: f64 = 320.0;
const H: f64 = 120.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 20.0;

/// Two small charts (5xx rate, p99) of the rollout's minutes, candidate solid with dots,
/// stable dashed with squares.
fn chart(h: &mut String, c: &Chart, r: &Rollout, i: usize) {
    if let Some(e) = &c.error {
        let _ = write!(
            h,
            "<p>No chart: Cloud Monitoring could not be read ({}).</p>",
            esc(e)
        );
        return;
    }
    let limits = r.last_judged.as_ref();
    h.push_str("<div class=\"charts\">");
    panel(
        h,
        c,
        &format!("chart-{i}-5xx"),
        &format!("5xx rate per minute, {}", r.row.service),
        |m| (m.requests > 0).then_some(m.error_rate),
        limits.map(|l| l.max_error_rate),
        pct,
    );
    panel(
        h,
        c,
        &format!("chart-{i}-p99"),
        &format!("p99 latency per minute, {}", r.row.service),
        |m| m.p99_ms,
        limits.map(|l| l.max_p99_ms),
        ms,
    );
    h.push_str("</div><p class=\"legend\">");
    for s in &c.series {
        let _ = write!(
            h,
            "{mark} {role} <code>{rev}</code>&nbsp;&nbsp; ",
            mark = if s.role == "candidate" {
                "● solid line:"
            } else {
                "■ dashed line:"
            },
            role = s.role,
            rev = esc(&s.revision),
        );
    }
    h.push_str("- - red: the limit</p>");
}

#[allow(
    clippy::too_many_arguments,
    reason = "one panel's whole description, used twice"
)]
fn panel(
    h: &mut String,
    c: &Chart,
    id: &str,
    title: &str,
    value: impl Fn(&super::Minute) -> Option<f64>,
    limit: Option<f64>,
    show: fn(f64) -> String,
) {
    let from = c.from.as_second() as f64;
    let span = (c.to.as_second() as f64 - from).max(60.0);
    let top = c
        .series
        .iter()
        .flat_map(|s| s.minutes.iter().filter_map(&value))
        .chain(limit)
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let x = |t: jiff::Timestamp| LEFT + (t.as_second() as f64 - from) / span * (W - LEFT - 8.0);
    let y = |v: f64| 6.0 + (1.0 - v / top) * (H - BOTTOM - 6.0);
    let mut desc = String::new();
    for s in &c.series {
        let vals: Vec<f64> = s.minutes.iter().filter_map(&value).collect();
        match (vals.last(), vals.iter().copied().reduce(f64::max)) {
            (Some(last), Some(max)) => {
                let _ = write!(
                    desc,
                    "{} {}: {} minutes, last {}, highest {}. ",
                    s.role,
                    s.revision,
                    vals.len(),
                    show(*last),
                    show(max)
                );
            }
            _ => {
                let _ = write!(desc, "{} {}: no data yet. ", s.role, s.revision);
            }
        }
    }
    if let Some(l) = limit {
        let _ = write!(desc, "Limit {}.", show(l));
    }
    let _ = write!(h, "<figure><figcaption>{}</figcaption>", esc(title));
    let _ = write!(
        h,
        "<svg role=\"img\" aria-labelledby=\"{id}-t {id}-d\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\"><title id=\"{id}-t\">{title}</title><desc id=\"{id}-d\">{desc}</desc>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#5c6670\"/>\
         <line x1=\"{LEFT}\" y1=\"6\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#5c6670\"/>\
         <text x=\"{lx}\" y=\"12\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\">{top_label}</text>\
         <text x=\"{lx}\" y=\"{base}\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\">0</text>\
         <text x=\"{LEFT}\" y=\"{H}\" font-size=\"10\" fill=\"currentColor\" dy=\"-4\">{from_label}</text>\
         <text x=\"{right}\" y=\"{H}\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\" dy=\"-4\">{to_label}</text>",
        title = esc(title),
        desc = esc(desc.trim()),
        base = H - BOTTOM,
        right = W - 8.0,
        lx = LEFT - 4.0,
        top_label = esc(&show(top)),
        from_label = hhmm(c.from),
        to_label = hhmm(c.to),
    );
    if let Some(l) = limit {
        let _ = write!(
            h,
            "<line x1=\"{LEFT}\" y1=\"{ly:.1}\" x2=\"{right}\" y2=\"{ly:.1}\" stroke=\"#a61b1b\" stroke-dasharray=\"2 3\"/>",
            ly = y(l),
            right = W - 8.0,
        );
    }
    for s in &c.series {
        line(h, s, &value, &x, &y);
    }
    h.push_str("</svg></figure>");
}

/// One revision's curve: candidate solid with dots, stable dashed with squares.
fn line(
    h: &mut String,
    s: &Series,
    value: &impl Fn(&super::Minute) -> Option<f64>,
    x: &impl Fn(jiff::Timestamp) -> f64,
    y: &impl Fn(f64) -> f64,
) {
    let candidate = s.role == "candidate";
    let (stroke, dash) = if candidate {
        ("#1f5fa8", "")
    } else {
        ("#5c6670", " stroke-dasharray=\"6 4\"")
    };
    let pts: Vec<(f64, f64)> = s
        .minutes
        .iter()
        .filter_map(|m| value(m).map(|v| (x(m.at), y(v))))
        .collect();
    let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
    let _ = write!(
        h,
        "<polyline class=\"series-{role}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\"{dash} points=\"{points}\"/>",
        role = s.role,
        points = path.join(" "),
    );
    for (a, b) in pts {
        if candidate {
            let _ = write!(
                h,
                "<circle cx=\"{a:.1}\" cy=\"{b:.1}\" r=\"2.5\" fill=\"{stroke}\"/>"
            );
        } else {
            let _ = write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"5\" height=\"5\" fill=\"{stroke}\"/>",
                a - 2.5,
                b - 2.5
            );
        }
    }
}
