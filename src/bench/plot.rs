//! The picture brokers are compared by: latency percentile curves on a "nines" axis
//! (50%, 90%, 99%, 99.9%, ...), one line per run and one panel per latency kind, beside a
//! bar chart of each run's produce and consume throughput. SVG or PNG by the file's
//! extension (`plotters`). Text is drawn with a TrueType font found on the system.

use std::path::Path;

use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::latency::LatencySummary;
use super::report::Report;

const WIDTH_PER_PANEL: u32 = 560;
const HEIGHT: u32 = 480;
/// Where fonts usually are; the first TrueType font found is used.
const FONT_DIRS: [&str; 3] = [
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "/usr/lib/fonts",
];
const PREFERRED_FONT: &str = "DejaVuSans.ttf";
pub(super) const FONT: &str = "sans-serif";

/// Draws `runs` (label, report) into `out` (.svg or .png).
pub fn plot(runs: &[(String, Report)], out: &Path) -> anyhow::Result<()> {
    if runs.is_empty() {
        bail!("no reports to plot");
    }
    register_font()?;
    let kinds = latency_kinds(runs);
    let panels = kinds.len() as u32 + 1;
    let size = (WIDTH_PER_PANEL * panels, HEIGHT);
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "svg" => draw(SVGBackend::new(out, size).into_drawing_area(), runs, &kinds),
        "png" => draw(
            BitMapBackend::new(out, size).into_drawing_area(),
            runs,
            &kinds,
        ),
        _ => bail!(
            "cannot tell the format of {} (use .svg or .png)",
            out.display()
        ),
    }
    .with_context(|| format!("drawing {}", out.display()))
}

/// One run's curve: its index (colour), label and (nines, ms) points.
type Series<'a> = (usize, &'a String, Vec<(f64, f64)>);
/// A bar per run: name, colour, offset from the run's slot, and the value drawn.
type Bar = (&'static str, RGBAColor, f64, fn(&Report) -> f64);

type Kind = (&'static str, fn(&Report) -> Option<&LatencySummary>);

/// The latency kinds any of the runs measured.
fn latency_kinds(runs: &[(String, Report)]) -> Vec<Kind> {
    let all: [Kind; 2] = [
        ("produce latency (send → ack)", |r| {
            r.latency.produce.as_ref()
        }),
        ("end-to-end latency", |r| r.latency.end_to_end.as_ref()),
    ];
    all.into_iter()
        .filter(|(_, get)| {
            runs.iter()
                .any(|(_, r)| get(r).is_some_and(|s| s.count > 0))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[(String, Report)],
    kinds: &[Kind],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((1, kinds.len() + 1));
    for (area, (title, get)) in areas.iter().zip(kinds) {
        draw_latency(area, title, runs, *get)?;
    }
    if let Some(area) = areas.last() {
        draw_throughput(area, runs)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A percentile's distance from 100% in nines: 90% → 1, 99% → 2, 99.9% → 3.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-9).log10()
}

fn nines_label(n: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-n));
    let decimals = (n.round().max(0.0) as usize).saturating_sub(1);
    let s = format!("{p:.decimals$}");
    // Trailing zeros go only after a decimal point: "90.0" reads "90", but "0" stays.
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}%")
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(String, Report)],
    get: fn(&Report) -> Option<&LatencySummary>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, (label, r))| {
            let s = get(r)?;
            let points = s
                .curve
                .iter()
                .map(|[p, us]| (nines(*p), (us / 1000.0).max(1e-3)))
                .collect();
            Some((i, label, points))
        })
        .collect();
    let all = series.iter().flat_map(|(_, _, p)| p.iter());
    let max_x = all.clone().map(|p| p.0).fold(2.0f64, f64::max).ceil();
    let max_y = all.clone().map(|p| p.1).fold(1e-2, f64::max) * 2.0;
    let min_y = all.map(|p| p.1).fold(f64::MAX, f64::min).min(max_y / 10.0) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x, (min_y..max_y).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|n| nines_label(*n))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    for (i, label, points) in series {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[(String, Report)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let max = runs
        .iter()
        .map(|(_, r)| r.produce.mb_per_s.max(r.consume.mb_per_s))
        .fold(1.0, f64::max);
    let n = runs.len();
    let labels: Vec<String> = runs.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("throughput (MB/s of values)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(2))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("MB/s")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let bars: [Bar; 2] = [
        ("produce", BLUE.mix(0.7), -0.38, |r: &Report| {
            r.produce.mb_per_s
        }),
        ("consume", GREEN.mix(0.7), 0.02, |r: &Report| {
            r.consume.mb_per_s
        }),
    ];
    for (name, color, offset, value) in bars {
        let rects = runs.iter().enumerate().map(move |(i, (_, r))| {
            let x = i as f64 + offset;
            Rectangle::new([(x, 0.0), (x + 0.36, value(r))], color.filled())
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

pub(super) fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// Registers a system TrueType font as "sans-serif" (once).
pub(super) fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = find_font().ok_or_else(|| {
                "no TrueType font found under /usr/share/fonts (install fonts-dejavu-core)"
                    .to_owned()
            })?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable font", path.display()))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find_font() -> Option<std::path::PathBuf> {
    let mut found = Vec::new();
    for dir in FONT_DIRS {
        collect_fonts(Path::new(dir), &mut found, 0);
    }
    found
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == PREFERRED_FONT))
        .or_else(|| found.first())
        .cloned()
}

fn collect_fonts(dir: &Path, out: &mut Vec<std::path::PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if path.is_dir() && depth < 4 {
            collect_fonts(&path, out, depth + 1);
        } else if path.extension().is_some_and(|x| x == "ttf") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_labels_read_as_percentiles() {
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(50.0) - std::f64::consts::LOG10_2).abs() < 1e-9);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(4.0), "99.99%");
        assert_eq!(nines_label(7.0), "99.99999%");
    }
}
