//! `--plot FILE.svg`: the curves of a `sweep` (writes/s and p99 latency against clients, one
//! line per value size) and of a `groups` run (writes/s and fdatasyncs/s against active
//! groups), drawn as one SVG file with two panels side by side.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::groups::GroupsOutcome;
use crate::sweep::SweepPoint;

/// One named line of a panel: (x, y) points in x order.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// One panel: a title, axis names, its lines; `log_y` for latency.
struct Panel {
    title: String,
    x: &'static str,
    y: &'static str,
    log_y: bool,
    lines: Vec<Line>,
}

const SIZE: (u32, u32) = (1200, 480);

/// With `--plot FILE.svg`, draw the curves of the `what` workload into the file with `draw`.
pub fn when_asked(
    path: Option<&Path>,
    what: &str,
    draw: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(path) = path {
        draw(path)?;
        eprintln!("{what}: curves drawn in {}", path.display());
    }
    Ok(())
}

/// Draw the sweep's two panels into `path`.
pub fn sweep(path: &Path, nodes: u32, points: &[SweepPoint]) -> Result<(), String> {
    let mut values: Vec<usize> = points.iter().map(|p| p.value_size).collect();
    values.sort_unstable();
    values.dedup();
    let line = |value: usize, y: &dyn Fn(&SweepPoint) -> f64| Line {
        name: format!("{value} B values"),
        points: points
            .iter()
            .filter(|p| p.value_size == value)
            .map(|p| (f64::from(p.clients), y(p)))
            .collect(),
    };
    let writes = |p: &SweepPoint| p.outcome.total[0].ok as f64 / p.outcome.secs;
    let p99_ms = |p: &SweepPoint| p.outcome.total[0].pct(0.99) as f64 / 1000.0;
    draw(
        path,
        [
            Panel {
                title: format!("put sweep, {nodes} node(s): writes/s"),
                x: "clients",
                y: "writes/s",
                log_y: false,
                lines: values.iter().map(|&v| line(v, &writes)).collect(),
            },
            Panel {
                title: "p99 write latency".into(),
                x: "clients",
                y: "p99 (ms)",
                log_y: true,
                lines: values.iter().map(|&v| line(v, &p99_ms)).collect(),
            },
        ],
        true,
    )
}

/// Draw the groups run's two panels into `path`.
pub fn groups(path: &Path, nodes: u32, o: &GroupsOutcome) -> Result<(), String> {
    let series = |name: &str, y: &dyn Fn(&crate::groups::ActivePoint) -> f64| Line {
        name: name.into(),
        points: o
            .active
            .iter()
            .map(|p| (f64::from(p.groups), y(p)))
            .collect(),
    };
    let (rss, disk) = o.per_group();
    draw(
        path,
        [
            Panel {
                title: format!(
                    "{} groups on {nodes} node(s): {rss:.1} KiB RSS, {:.1} KiB disk per group",
                    o.groups,
                    disk / 1024.0
                ),
                x: "active groups",
                y: "per second",
                log_y: false,
                lines: vec![
                    series("writes/s", &|p| p.writes_per_sec),
                    series("fdatasyncs/s", &|p| p.fsyncs_per_sec),
                ],
            },
            Panel {
                title: "p99 write latency".into(),
                x: "active groups",
                y: "p99 (ms)",
                log_y: true,
                lines: vec![series("p99", &|p| p.p99_us as f64 / 1000.0)],
            },
        ],
        o.active.len() > 1 && o.active.iter().any(|p| p.groups > 1),
    )
}

fn draw(path: &Path, panels: [Panel; 2], log_x: bool) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let halves = root.split_evenly((1, 2));
    for (area, panel) in halves.iter().zip(&panels) {
        draw_panel(area, panel, log_x).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// The range of the values `v` (at least a little wide, so one point still draws).
fn span(v: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = v.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
    if lo > hi {
        (lo, hi) = (1.0, 10.0);
    }
    if log {
        (lo.max(1e-3) / 1.5, hi.max(1e-3) * 1.5)
    } else {
        (0.0, (hi * 1.1).max(1.0))
    }
}

/// An axis label: no trailing `.0`, thousands as `k`, small values with their decimals.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 10.0 || *v == v.round() {
        format!("{v:.0}")
    } else if a >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    p: &Panel,
    log_x: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let all = || p.lines.iter().flat_map(|l| l.points.iter().copied());
    let (x0, x1) = span(all().map(|(x, _)| x), log_x);
    let (y0, y1) = span(all().map(|(_, y)| y), p.log_y);
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(&p.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    // Four coordinate kinds make four chart types; one macro body draws each.
    macro_rules! body {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(p.x)
                .y_desc(p.y)
                .x_labels(8)
                .y_labels(8)
                .max_light_lines(1)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            for (i, line) in p.lines.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                c.draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                c.draw_series(
                    line.points
                        .iter()
                        .map(|&pt| Circle::new(pt, 3, color.filled())),
                )?;
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }};
    }
    match (log_x, p.log_y) {
        (true, true) => {
            body!(chart.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?)
        }
        (true, false) => body!(chart.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (false, true) => body!(chart.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (false, false) => body!(chart.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_their_points_and_survive_one_or_none() {
        let (lo, hi) = span([3.0, 40.0].into_iter(), true);
        assert!(lo < 3.0 && hi > 40.0);
        let (lo, hi) = span([5.0].into_iter(), false);
        assert!(lo == 0.0 && hi > 5.0);
        let (lo, hi) = span(std::iter::empty(), true);
        assert!(
            lo > 0.0 && hi > lo,
            "an empty panel still has a drawable range"
        );
    }

    #[test]
    fn ticks_read_as_numbers_people_write() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [t(350_000.0), t(1024.0), t(16.0), t(1.0), t(2.5), t(0.05)],
            ["350k", "1024", "16", "1", "2.5", "0.05"]
        );
    }

    #[test]
    fn a_panel_draws_its_lines_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let line = |name: &str, k: f64| Line {
            name: name.into(),
            points: vec![(1.0, k), (16.0, 10.0 * k), (256.0, 50.0 * k)],
        };
        let panel = |title: &str| Panel {
            title: title.into(),
            x: "clients",
            y: "writes/s",
            log_y: false,
            lines: vec![line("100 B values", 1000.0), line("4096 B values", 500.0)],
        };
        draw(&path, [panel("left"), panel("right")], true).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "an SVG document");
        for text in ["left", "right", "100 B values", "4096 B values", "clients"] {
            assert!(svg.contains(text), "the picture names {text}");
        }
        assert!(
            svg.matches("<polyline").count() >= 4,
            "a line per series per panel"
        );
    }
}
