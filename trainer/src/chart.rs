//! SVG charts of training curves, drawn with `plotters`' SVG backend.
//!
//! The SVG backend emits `<text>` elements and lets the viewer render them, so no font files
//! or font-rendering features are needed (text extents are estimated for layout only).
//! Charts are rendered into a `String` and written with [`crate::io::write_atomic`], so a chart
//! being refreshed during training is never seen half-written.
//!
//! - [`loss_and_accuracy_svg`]: classifier runs; training loss per step (raw values faint,
//!   smoothed line on top) above test accuracy per epoch (line + points).
//! - [`train_val_loss_svg`]: language-model runs; training loss per step (raw + smoothed)
//!   and validation loss at the steps where it was evaluated.
//! - [`line_chart_svg`]: any set of [`Series`] on one pair of axes.
//!
//! Non-finite values (a diverged loss) are skipped rather than drawn. Empty inputs give an
//! empty but valid chart. Each returns the SVG text; [`write_svg`] writes it atomically, with
//! an error (`anyhow`) naming the file when writing fails.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use plotters::coord::Shift;
use plotters::prelude::*;

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("failed to draw chart: {e}")
}

/// How a [`Series`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesStyle {
    /// A 2-pixel line.
    Line,
    /// A thin, mostly transparent line (raw noisy values under a smoothed curve).
    Faint,
    /// A line with a dot at every point (sparse measurements, e.g. per epoch).
    LineAndPoints,
}

/// One named curve. An empty `name` keeps the series out of the legend.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: SeriesStyle,
    /// RGB colour; `None` picks one from a fixed palette by the series' position.
    pub color: Option<(u8, u8, u8)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, style: SeriesStyle) -> Series {
        Series {
            name: name.into(),
            points,
            style,
            color: None,
        }
    }

    /// A series from `(step, value)` pairs, as recorded by a training loop.
    pub fn from_steps(
        name: impl Into<String>,
        data: &[(usize, f32)],
        style: SeriesStyle,
    ) -> Series {
        Series::new(name, to_points(data), style)
    }

    pub fn with_color(mut self, rgb: (u8, u8, u8)) -> Series {
        self.color = Some(rgb);
        self
    }
}

fn to_points(data: &[(usize, f32)]) -> Vec<(f64, f64)> {
    data.iter()
        .map(|&(s, v)| (s as f64, f64::from(v)))
        .collect()
}

const PALETTE: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
];
const BLUE: (u8, u8, u8) = PALETTE[0];
const ORANGE: (u8, u8, u8) = PALETTE[1];
const GREEN: (u8, u8, u8) = PALETTE[2];

/// Smoothing window used for `n` per-step values: `clamp(n / 50, 1, 501)` steps, made odd.
pub fn smoothing_window(n: usize) -> usize {
    (n / 50).clamp(1, 501) | 1
}

/// Centred moving average over `window` values (`window / 2` on each side, fewer near the
/// ends), so the smoothed curve does not lag behind the raw one. Non-finite values are left
/// out of the averages; an output is NaN only if its whole window is non-finite.
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let half = window / 2;
    // Prefix sums of the finite values and of how many there are.
    let mut sum = Vec::with_capacity(values.len() + 1);
    let mut count = Vec::with_capacity(values.len() + 1);
    let (mut s, mut c) = (0.0f64, 0usize);
    sum.push(s);
    count.push(c);
    for &v in values {
        if v.is_finite() {
            s += v;
            c += 1;
        }
        sum.push(s);
        count.push(c);
    }
    (0..values.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(values.len()));
            let k = count[hi] - count[lo];
            if k == 0 {
                f64::NAN
            } else {
                (sum[hi] - sum[lo]) / k as f64
            }
        })
        .collect()
}

/// The raw-and-smoothed pair of series for per-step losses.
fn step_loss_series(name: &str, data: &[(usize, f32)], color: (u8, u8, u8)) -> [Series; 2] {
    let raw = to_points(data);
    let ys: Vec<f64> = raw.iter().map(|p| p.1).collect();
    let smooth = moving_average(&ys, smoothing_window(ys.len()));
    let smoothed: Vec<(f64, f64)> = raw.iter().zip(smooth).map(|(p, s)| (p.0, s)).collect();
    [
        Series::new(format!("{name} (per step)"), raw, SeriesStyle::Faint).with_color(color),
        Series::new(format!("{name} (smoothed)"), smoothed, SeriesStyle::Line).with_color(color),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum YFormat {
    Plain,
    /// Fractions shown as percentages; the axis is clamped to `[0, 1]`.
    Percent,
}

struct Panel<'a> {
    caption: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    y_format: YFormat,
    legend: SeriesLabelPosition,
}

const FONT: &str = "sans-serif";

/// `[lo, hi)` covering `values` with a 5% margin; never empty.
fn padded_range(values: impl Iterator<Item = f64>, pad: bool) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let m = if pad { (hi - lo) * 0.05 } else { 0.0 };
    (lo - m, hi + m)
}

/// Formats an axis value with enough decimals for labels about `span / 10` apart, without
/// trailing zeros.
fn axis_label(v: f64, span: f64) -> String {
    let decimals = if span.is_finite() && span > 0.0 {
        ((10.0 / span).log10().ceil() + 1.0).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
) -> anyhow::Result<()> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(finite)
    };
    let (mut x0, mut x1) = padded_range(all().map(|p| p.0), false);
    if panel
        .series
        .iter()
        .any(|s| s.style == SeriesStyle::LineAndPoints)
    {
        // Keep dots at the ends inside the plot.
        let m = ((x1 - x0) * 0.03).max(0.1);
        (x0, x1) = (x0 - m, x1 + m);
    }
    let (mut y0, mut y1) = padded_range(all().map(|p| p.1), true);
    if panel.y_format == YFormat::Percent {
        let (c0, c1) = (y0.max(0.0), y1.min(1.0));
        (y0, y1) = if c0 < c1 { (c0, c1) } else { (0.0, 1.0) };
    }
    // Steps and epochs are whole numbers: label only whole numbers, at most 10 of them.
    let x_integer = all().all(|p| p.0.fract() == 0.0);
    let x_labels = if x_integer {
        ((x1 - x0).floor() as usize + 1).clamp(2, 10)
    } else {
        10
    };
    let y_scale = if panel.y_format == YFormat::Percent {
        100.0
    } else {
        1.0
    };
    let y_span = (y1 - y0) * y_scale;

    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    let y_fmt = |v: &f64| match panel.y_format {
        YFormat::Plain => axis_label(*v, y_span),
        YFormat::Percent => format!("{}%", axis_label(v * 100.0, y_span)),
    };
    let x_fmt = |v: &f64| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else if x_integer {
            String::new()
        } else {
            format!("{v}")
        }
    };
    chart
        .configure_mesh()
        .x_labels(x_labels)
        .x_desc(panel.x_label)
        .y_desc(panel.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(draw_err)?;

    let mut legend = false;
    for (k, s) in panel.series.iter().enumerate() {
        let (r, g, b) = s.color.unwrap_or(PALETTE[k % PALETTE.len()]);
        let color = RGBColor(r, g, b);
        let pts: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
        let line_style = match s.style {
            SeriesStyle::Faint => color.mix(0.3).stroke_width(1),
            SeriesStyle::Line | SeriesStyle::LineAndPoints => color.stroke_width(2),
        };
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), line_style))
            .map_err(draw_err)?;
        if !s.name.is_empty() {
            legend = true;
            drawn
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line_style));
        }
        if s.style == SeriesStyle::LineAndPoints {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_err)?;
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(panel.legend.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 13))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Renders `panels` stacked vertically (heights in proportion to `weights`) under `title`.
fn render(title: &str, size: (u32, u32), panels: &[(Panel<'_>, u32)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, (FONT, 22)).map_err(draw_err)?;
        let total: u32 = panels.iter().map(|p| p.1).sum::<u32>().max(1);
        let (_, height) = root.dim_in_pixel();
        let mut rest = root;
        for (i, (panel, weight)) in panels.iter().enumerate() {
            if i + 1 == panels.len() {
                draw_panel(&rest, panel)?;
            } else {
                let h = height * weight / total;
                let (top, bottom) = rest.split_vertically(h);
                draw_panel(&top, panel)?;
                rest = bottom;
            }
        }
        rest.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Writes a chart's SVG text to `path`, atomically.
pub fn write_svg(path: &Path, svg: &str) -> anyhow::Result<()> {
    crate::io::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing chart {}", path.display()))
}

/// `series` on one pair of axes (900x500 SVG).
pub fn line_chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<String> {
    let panel = Panel {
        caption: "",
        x_label,
        y_label,
        series,
        y_format: YFormat::Plain,
        legend: SeriesLabelPosition::UpperRight,
    };
    render(title, (900, 500), &[(panel, 1)])
}

/// Classifier training chart (900x800 SVG):
///
/// - top: `step_losses` as `(global step, loss)`, raw values faint and a smoothed line
///   ([`moving_average`] over [`smoothing_window`] steps);
/// - bottom: `epoch_accuracy` as `(epoch, accuracy)`, line + points, labelled in percent.
///   Accuracy may be given as fractions in `[0, 1]` or as percentages in `[0, 100]`: if any
///   value exceeds 1, all are taken as percentages.
pub fn loss_and_accuracy_svg(
    title: &str,
    step_losses: &[(usize, f32)],
    epoch_accuracy: &[(usize, f32)],
) -> anyhow::Result<String> {
    let losses = step_loss_series("training loss", step_losses, BLUE);
    // Accept percentages as well as fractions.
    let percent = epoch_accuracy.iter().any(|&(_, a)| a > 1.0);
    let scale = if percent { 0.01 } else { 1.0 };
    let points = epoch_accuracy
        .iter()
        .map(|&(e, a)| (e as f64, f64::from(a) * scale))
        .collect();
    let accuracy =
        [Series::new("test accuracy", points, SeriesStyle::LineAndPoints).with_color(GREEN)];
    let top = Panel {
        caption: "Training loss",
        x_label: "step",
        y_label: "loss",
        series: &losses,
        y_format: YFormat::Plain,
        legend: SeriesLabelPosition::UpperRight,
    };
    let bottom = Panel {
        caption: "Test accuracy",
        x_label: "epoch",
        y_label: "accuracy",
        series: &accuracy,
        y_format: YFormat::Percent,
        legend: SeriesLabelPosition::LowerRight,
    };
    render(title, (900, 800), &[(top, 55), (bottom, 45)])
}

/// Language-model training chart (900x500 SVG): training loss per step (raw faint + smoothed)
/// and validation loss at the steps it was measured, both as `(step, loss)`.
pub fn train_val_loss_svg(
    title: &str,
    train: &[(usize, f32)],
    val: &[(usize, f32)],
) -> anyhow::Result<String> {
    let [raw, smoothed] = step_loss_series("train", train, BLUE);
    let series = [
        raw,
        smoothed,
        Series::from_steps("validation", val, SeriesStyle::LineAndPoints).with_color(ORANGE),
    ];
    line_chart_svg(title, "step", "loss", &series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_file(name: &str) -> PathBuf {
        // One directory per test file name, removed by the test.
        let dir = std::env::temp_dir().join(format!(
            "aka-chart-{}-{}",
            std::process::id(),
            name.replace('/', "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn check_svg(svg: &str) {
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn loss_and_accuracy_svg_is_written() {
        let losses: Vec<(usize, f32)> = (0..2000)
            .map(|s| {
                (
                    s,
                    2.3 * (-(s as f32) / 400.0).exp() + 0.05 * ((s * 7919) % 13) as f32 / 13.0,
                )
            })
            .collect();
        let acc = vec![(1, 0.95), (2, 0.975), (3, 0.981), (4, 0.9855)];
        let path = temp_file("mnist.svg");
        let svg = loss_and_accuracy_svg("MNIST <conv> & friends", &losses, &acc).unwrap();
        write_svg(&path, &svg).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        check_svg(&svg);
        assert!(
            svg.contains("<text"),
            "SVG text rendering works without ttf"
        );
        assert!(
            svg.contains("MNIST &lt;conv&gt; &amp; friends"),
            "title is escaped"
        );
        assert!(svg.contains("test accuracy") && svg.contains('%'));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn empty_and_degenerate_series_do_not_panic() {
        check_svg(&loss_and_accuracy_svg("empty", &[], &[]).unwrap());
        check_svg(&loss_and_accuracy_svg("one", &[(0, 2.3)], &[(1, 1.0)]).unwrap());
        check_svg(
            &loss_and_accuracy_svg("nan", &[(0, f32::NAN), (1, f32::INFINITY)], &[]).unwrap(),
        );
        check_svg(&train_val_loss_svg("empty", &[], &[]).unwrap());
        check_svg(&line_chart_svg("none", "x", "y", &[]).unwrap());
        let path = temp_file("empty.svg");
        write_svg(&path, &train_val_loss_svg("empty", &[], &[]).unwrap()).unwrap();
        check_svg(&std::fs::read_to_string(&path).unwrap());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn train_val_chart_has_both_series() {
        let train: Vec<(usize, f32)> = (0..500).map(|s| (s, 4.0 - s as f32 / 200.0)).collect();
        let val = vec![(0, 4.1), (250, 2.9), (499, 1.7)];
        let svg = train_val_loss_svg("gpt", &train, &val).unwrap();
        check_svg(&svg);
        assert!(svg.contains("train (smoothed)") && svg.contains("validation"));
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let path = temp_file("no/such/dir/chart.svg");
        let err = write_svg(&path, &train_val_loss_svg("x", &[], &[]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("chart.svg"), "{err}");
        // `path` is `<temp dir>/no/such/dir/chart.svg`; only `<temp dir>` exists.
        std::fs::remove_dir_all(path.ancestors().nth(4).unwrap()).unwrap();
    }

    #[test]
    fn smoothing() {
        assert_eq!(moving_average(&[1.0, 2.0], 1), vec![1.0, 2.0]);
        assert_eq!(moving_average(&[], 5), Vec::<f64>::new());
        let s = moving_average(&[5.0; 10], 5);
        assert!(s.iter().all(|v| (v - 5.0).abs() < 1e-12), "{s:?}");
        // Linear data is unchanged away from the ends: no lag.
        let lin: Vec<f64> = (0..20).map(f64::from).collect();
        let s = moving_average(&lin, 5);
        assert!((2..18).all(|i| (s[i] - lin[i]).abs() < 1e-12), "{s:?}");
        let s = moving_average(&[f64::NAN, 1.0, f64::NAN, 3.0], 3);
        assert_eq!(s, vec![1.0, 1.0, 2.0, 3.0]);
        assert!(moving_average(&[f64::NAN; 3], 1).iter().all(|v| v.is_nan()));
        assert_eq!(smoothing_window(10), 1);
        assert_eq!(smoothing_window(938 * 3), 57);
    }

    #[test]
    fn axis_labels() {
        assert_eq!(axis_label(2.5, 2.6), "2.5");
        assert_eq!(axis_label(2.0, 2.6), "2");
        assert_eq!(axis_label(0.25, 2.6), "0.25");
        assert_eq!(axis_label(97.5, 2.4), "97.5");
        assert_eq!(axis_label(1500.0, 3000.0), "1500");
        assert_eq!(axis_label(-0.0001, 2.0), "0");
        assert_eq!(axis_label(1.0, f64::NAN), "1");
    }
}
