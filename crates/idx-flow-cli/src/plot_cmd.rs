//! `idx-flow plot MAP -o map.png`.

use std::path::PathBuf;

use idx_flow::data::HealpixMaps;
use idx_flow::plot::{mollweide, save_png};

#[derive(clap::Args)]
pub struct PlotArgs {
    /// The map: .npy ([N], [C, N] or [T, C, N]; RING unless --nested) or FITS (healpy write_map).
    map: PathBuf,
    /// Output PNG.
    #[arg(short, long)]
    output: PathBuf,
    /// .npy maps are in NESTED order.
    #[arg(long)]
    nested: bool,
    /// Channel to draw.
    #[arg(long, default_value_t = 0)]
    channel: usize,
    /// Sample (first axis of [T, C, N]) to draw.
    #[arg(long, default_value_t = 0)]
    sample: usize,
    /// Lower end of the colour scale (default: the map's minimum).
    #[arg(long, allow_negative_numbers = true)]
    min: Option<f64>,
    /// Upper end of the colour scale (default: the map's maximum).
    #[arg(long, allow_negative_numbers = true)]
    max: Option<f64>,
    /// Draw channels 0..3 as true colour (values in [0, 1]) instead of one channel with a colour bar.
    #[arg(long)]
    rgb: bool,
    /// Title above the map (default: the file name and channel).
    #[arg(long)]
    title: Option<String>,
    /// Width of the picture in pixels.
    #[arg(long, default_value_t = 1000)]
    width: u32,
}

pub fn run(args: PlotArgs) -> Result<(), String> {
    let maps = HealpixMaps::open(&args.map, args.nested).map_err(|e| e.to_string())?;
    if args.sample >= maps.samples() {
        return Err(format!(
            "--sample {}: the map has {} sample(s), expected 0..{}",
            args.sample,
            maps.samples(),
            maps.samples()
        ));
    }
    if args.width < 64 {
        return Err(format!(
            "--width {}: expected at least 64 pixels",
            args.width
        ));
    }
    let file = args
        .map
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let grid = maps.grid();
    let img = if args.rgb {
        if maps.channels() < 3 {
            return Err(format!(
                "--rgb needs 3 channels, the map has {}",
                maps.channels()
            ));
        }
        let n = grid.npix() as usize;
        let mut rgb = vec![0f32; n * 3];
        for k in 0..3 {
            for (p, v) in maps.map(args.sample, k).iter().enumerate() {
                rgb[p * 3 + k] = *v;
            }
        }
        let map = mollweide::rgb_map(grid, &rgb, args.width).map_err(|e| e.to_string())?;
        mollweide::figure(&map, args.title.as_deref().unwrap_or(&file), None)
    } else {
        if args.channel >= maps.channels() {
            return Err(format!(
                "--channel {}: the map has {} channel(s), expected 0..{}",
                args.channel,
                maps.channels(),
                maps.channels()
            ));
        }
        let values = maps.map(args.sample, args.channel);
        let (lo, hi) = mollweide::finite_range(values);
        let (lo, hi) = (args.min.unwrap_or(lo), args.max.unwrap_or(hi));
        if hi <= lo || hi.is_nan() || lo.is_nan() {
            return Err(format!(
                "colour scale {lo}..{hi}: expected --min below --max"
            ));
        }
        let title = args
            .title
            .clone()
            .unwrap_or_else(|| format!("{file} CHANNEL {}", args.channel));
        mollweide::map_figure(
            grid,
            values,
            args.width,
            &title,
            Some((lo, hi)),
            &format!("{grid}"),
        )
        .map_err(|e| e.to_string())?
    };
    save_png(&img, &args.output).map_err(|e| e.to_string())?;
    println!(
        "{} ({}, {} channel(s), {} sample(s)) -> {}",
        args.map.display(),
        grid,
        maps.channels(),
        maps.samples(),
        args.output.display()
    );
    Ok(())
}
