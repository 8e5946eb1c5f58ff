//! The chart of `cargo xtask bench week1` (SVG, drawn with plotters): one
//! row per configuration, one panel per metric, one bar per variant (the
//! median, with a min-max error bar and its value written above).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One bar: a variant's median, min and max, or a note saying why it has none.
pub struct Bar {
    pub label: String,
    pub value: Option<(f64, f64, f64)>,
    pub note: Option<String>,
}

/// One metric.
pub struct Panel {
    pub title: String,
    pub bars: Vec<Bar>,
}

/// One configuration (model and dtype).
pub struct Row {
    pub title: String,
    pub panels: Vec<Panel>,
}

const PANEL_WIDTH: u32 = 320;
const ROW_HEIGHT: u32 = 300;
const LEGEND_HEIGHT: u32 = 60;

/// The chart label of a `bench week2` step (`steps::STEPS`' keys).
pub fn step_label(key: &str) -> &'static str {
    match key {
        "week1" => "week 1",
        "kv_cache" => "+kv cache",
        "q4" => "+4-bit",
        "fused" => "+fused",
        "flash" => "+flash",
        "int8" => "+int8",
        _ => "?",
    }
}

/// A fixed colour per variant label, so every panel and chart agree.
fn colour(label: &str) -> RGBColor {
    match label {
        "week 1" => RGBColor(200, 200, 200),
        "+kv cache" => RGBColor(250, 220, 160),
        "+4-bit" => RGBColor(245, 175, 90),
        "+fused" => RGBColor(230, 120, 30),
        "+flash" => RGBColor(180, 70, 20),
        "+int8" => RGBColor(120, 40, 10),
        "first turn" => RGBColor(170, 170, 170),
        "second turn" => RGBColor(230, 120, 30),
        "mlx-lm" => RGBColor(52, 101, 164),
        "reference" => RGBColor(230, 120, 30),
        "learner" => RGBColor(60, 150, 70),
        "llama.cpp" => RGBColor(140, 80, 160),
        "mlx-lm (ref. BLAS)" => RGBColor(150, 180, 225),
        "reference (ref. BLAS)" => RGBColor(245, 195, 140),
        _ => RGBColor(128, 128, 128),
    }
}

fn value_text(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// Draws `rows` into the SVG file `path`, with `caption` (what was measured,
/// where) above the legend.
pub fn draw(rows: &[Row], caption: &str, path: &Path) -> Result<()> {
    let columns = rows
        .iter()
        .map(|r| r.panels.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let size = (
        PANEL_WIDTH * columns as u32,
        LEGEND_HEIGHT + ROW_HEIGHT * rows.len().max(1) as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (legend, body) = root.split_vertically(LEGEND_HEIGHT);

    // Legend: every label that appears, in order of first appearance.
    let mut labels: Vec<&str> = Vec::new();
    for bar in rows.iter().flat_map(|r| &r.panels).flat_map(|p| &p.bars) {
        if !labels.contains(&bar.label.as_str()) {
            labels.push(&bar.label);
        }
    }
    legend
        .draw(&Text::new(caption.to_string(), (12, 8), ("sans-serif", 13)))
        .map_err(err)?;
    let mut x = 12;
    for label in labels {
        legend
            .draw(&Rectangle::new(
                [(x, 35), (x + 14, 49)],
                colour(label).filled(),
            ))
            .map_err(err)?;
        legend
            .draw(&Text::new(
                label.to_string(),
                (x + 20, 35),
                ("sans-serif", 14),
            ))
            .map_err(err)?;
        x += 34 + 8 * label.len() as i32;
    }

    for (row, area) in rows.iter().zip(body.split_evenly((rows.len().max(1), 1))) {
        let area = area.titled(&row.title, ("sans-serif", 18)).map_err(err)?;
        for (panel, cell) in row.panels.iter().zip(area.split_evenly((1, columns))) {
            draw_panel(panel, &cell)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = panel.bars.len().max(1) as f64;
    let top = panel
        .bars
        .iter()
        .filter_map(|b| b.value.map(|v| v.2.max(v.0)))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.25 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(4)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(5)
        .y_label_formatter(&|v| value_text(*v))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(err)?;
    let above = ("sans-serif", 11)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, bar) in panel.bars.iter().enumerate() {
        let x = i as f64;
        match (bar.value, &bar.note) {
            (Some((median, lo, hi)), _) => {
                let c = colour(&bar.label);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.15, 0.0), (x + 0.85, median)],
                        c.filled(),
                    )))
                    .map_err(err)?;
                if hi > lo {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_vertical(
                            x + 0.5,
                            lo,
                            median,
                            hi,
                            BLACK.stroke_width(1),
                            8,
                        )))
                        .map_err(err)?;
                }
                chart
                    .draw_series(std::iter::once(Text::new(
                        value_text(median),
                        (x + 0.5, hi.max(median) + top * 0.01),
                        above.clone(),
                    )))
                    .map_err(err)?;
            }
            (None, Some(note)) => {
                let vertical = ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate270)
                    .color(&RGBColor(110, 110, 110));
                // Rotated text runs upwards from its anchor, near the axis.
                chart
                    .draw_series(std::iter::once(Text::new(
                        note.clone(),
                        (x + 0.42, top * 0.03),
                        vertical,
                    )))
                    .map_err(err)?;
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_notes_and_values() {
        let dir = crate::util::target_dir().join("tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bench-chart-test.svg");
        let bar = |label: &str, v: Option<(f64, f64, f64)>, note: Option<&str>| Bar {
            label: label.into(),
            value: v,
            note: note.map(String::from),
        };
        let rows = vec![Row {
            title: "tiny f32".into(),
            panels: vec![Panel {
                title: "prefill 128 tok/s".into(),
                bars: vec![
                    bar("mlx-lm", Some((200.0, 190.0, 210.0)), None),
                    bar("reference", Some((180.0, 180.0, 180.0)), None),
                    bar("learner", None, Some("not implemented (day 2)")),
                ],
            }],
        }];
        draw(&rows, "a test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("not implemented (day 2)"));
        assert!(svg.contains("\n200\n") && svg.contains("prefill 128 tok/s"));
    }
}
