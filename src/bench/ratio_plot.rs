//! The picture of a peer comparison (`bench/compare --kafka`, schema `sluice-vs-kafka/1`):
//! one row per compared figure, sluice's advantage over the peer on a logarithmic axis, a dot
//! per round and a bar to the median. Advantage is the ratio sluice/peer for figures where
//! higher is better (throughput) and peer/sluice where lower is better (latency), so right of
//! 1× always means sluice did better; the bar runs from 1× to the median, green where sluice
//! did better and red where it did worse. SVG or PNG by the file's extension.

use std::path::Path;

use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use super::plot::{err, register_font, FONT};

const WIDTH: u32 = 1280;
const ROW_HEIGHT: u32 = 26;
const MARGIN_HEIGHT: u32 = 140;
const LABEL_WIDTH: u32 = 620;

/// The parts of a comparison summary this picture reads.
#[derive(Debug, Deserialize)]
pub struct Comparison {
    pub date: String,
    pub kafka_version: String,
    pub comparisons: Vec<Compared>,
}

#[derive(Debug, Deserialize)]
pub struct Compared {
    pub profile: String,
    pub workload: String,
    pub metric: String,
    /// "higher" or "lower": which way is better for this figure.
    pub better: String,
    pub rounds: Vec<Round>,
    pub median_ratio: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Round {
    /// sluice / peer in this round; absent when either side has no figure.
    pub ratio: Option<f64>,
}

impl Compared {
    fn label(&self) -> String {
        format!("{} · {} · {}", self.profile, self.workload, self.metric)
    }

    /// sluice's advantage for a ratio sluice/peer: above 1 means sluice did better.
    fn advantage(&self, ratio: f64) -> Option<f64> {
        if !(ratio.is_finite() && ratio > 0.0) {
            return None;
        }
        Some(if self.better == "lower" {
            1.0 / ratio
        } else {
            ratio
        })
    }

    fn round_advantages(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| r.ratio.and_then(|x| self.advantage(x)))
            .collect()
    }

    fn median_advantage(&self) -> Option<f64> {
        self.median_ratio.and_then(|x| self.advantage(x))
    }
}

/// Reads a comparison summary (JSON) and draws it into `out`.
pub fn plot_file(summary: &Path, out: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("cannot read {}", summary.display()))?;
    let comparison: Comparison = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a comparison summary", summary.display()))?;
    plot(&comparison, out)
}

/// Draws `comparison` into `out` (.svg or .png).
pub fn plot(comparison: &Comparison, out: &Path) -> anyhow::Result<()> {
    if comparison.comparisons.is_empty() {
        bail!("the summary compares nothing");
    }
    register_font()?;
    let height = MARGIN_HEIGHT + ROW_HEIGHT * comparison.comparisons.len() as u32;
    let size = (WIDTH, height);
    match out.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "svg" => draw(SVGBackend::new(out, size).into_drawing_area(), comparison),
        "png" => draw(
            BitMapBackend::new(out, size).into_drawing_area(),
            comparison,
        ),
        _ => bail!(
            "cannot tell the format of {} (use .svg or .png)",
            out.display()
        ),
    }
    .with_context(|| format!("drawing {}", out.display()))
}

/// The x range in powers of ten that holds every advantage and 1×, at least 0.1×..10×.
fn x_range(rows: &[Compared]) -> (f64, f64) {
    let all = rows
        .iter()
        .flat_map(|c| c.round_advantages().into_iter().chain(c.median_advantage()));
    let (lo, hi) = all.fold((0.1f64, 10f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    )
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    comparison: &Comparison,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let rows = &comparison.comparisons;
    let n = rows.len();
    let (lo, hi) = x_range(rows);
    let labels: Vec<String> = rows.iter().map(Compared::label).collect();
    let caption = format!(
        "sluice vs Apache Kafka {} ({}): sluice's advantage, dots = rounds, bar = median",
        comparison.kafka_version, comparison.date
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 18))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(LABEL_WIDTH)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..n as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| row_label(&labels, *y))
        .x_label_formatter(&|x| format!("{x}×"))
        .x_desc("throughput: sluice / Kafka; latency: Kafka / sluice (right of 1× = sluice better)")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    draw_rows(&mut chart, rows)?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, -0.5), (1.0, n as f64 - 0.5)],
            BLACK.stroke_width(2),
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The label of the row at `y` (row 0 at the top), or nothing between rows.
fn row_label(labels: &[String], y: f64) -> String {
    let i = y.round();
    if (y - i).abs() > 0.01 || i < 0.0 {
        return String::new();
    }
    let from_top = labels.len().checked_sub(1 + i as usize);
    from_top
        .and_then(|k| labels.get(k))
        .cloned()
        .unwrap_or_default()
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

fn draw_rows<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, rows: &[Compared]) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let n = rows.len();
    for (k, row) in rows.iter().enumerate() {
        let y = (n - 1 - k) as f64;
        if let Some(m) = row.median_advantage() {
            let color = if m >= 1.0 {
                GREEN.mix(0.6)
            } else {
                RED.mix(0.6)
            };
            chart
                .draw_series([Rectangle::new(
                    [(1.0, y - 0.3), (m, y + 0.3)],
                    color.filled(),
                )])
                .map_err(err)?;
        }
        let dots = row
            .round_advantages()
            .into_iter()
            .map(move |a| Circle::new((a, y), 4, BLACK.filled()));
        chart.draw_series(dots).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compared(better: &str, ratios: &[f64]) -> Compared {
        Compared {
            profile: "durable".into(),
            workload: "w".into(),
            metric: "m".into(),
            better: better.into(),
            rounds: ratios.iter().map(|&r| Round { ratio: Some(r) }).collect(),
            median_ratio: ratios.get(ratios.len() / 2).copied(),
        }
    }

    #[test]
    fn lower_is_better_figures_are_inverted_so_right_means_sluice_better() {
        assert_eq!(compared("higher", &[2.0]).median_advantage(), Some(2.0));
        assert_eq!(compared("lower", &[0.25]).median_advantage(), Some(4.0));
        assert_eq!(compared("lower", &[0.0]).median_advantage(), None);
    }

    #[test]
    fn x_range_covers_every_round_in_powers_of_ten() {
        let rows = [
            compared("higher", &[0.03, 1.0]),
            compared("lower", &[0.002]),
        ];
        assert_eq!(x_range(&rows), (0.01, 1000.0));
    }

    #[test]
    fn rows_are_labelled_top_down_and_not_between() {
        let labels = vec!["first".to_owned(), "second".to_owned()];
        assert_eq!(row_label(&labels, 1.0), "first");
        assert_eq!(row_label(&labels, 0.0), "second");
        assert_eq!(row_label(&labels, 0.5), "");
    }

    #[test]
    fn draws_a_summary_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("s.json");
        std::fs::write(
            &summary,
            r#"{"date": "today", "kafka_version": "4.x", "comparisons": [
                {"profile": "durable", "workload": "w", "metric": "produce MB/s",
                 "better": "higher", "rounds": [{"ratio": 1.5}, {"ratio": null}],
                 "median_ratio": 1.5}]}"#,
        )
        .unwrap();
        let out = dir.path().join("r.svg");
        plot_file(&summary, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("produce MB/s"), "row label drawn");
    }
}
