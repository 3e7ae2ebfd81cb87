//! Pictures: the Mollweide projection and the figure files.

use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_train::plot::colormap::{nice_ticks, tick_label, viridis};
use idx_flow_train::plot::mollweide::{inverse, map_figure, rgb_map};

#[test]
fn mollweide_centre_edges_and_outside() {
    let (w, h) = (400, 200);
    // The centre is longitude 0 on the equator; east is to the right, north up.
    let c = inverse(w / 2, h / 2, w, h).unwrap();
    assert!(c[0] > 0.999);
    let east = inverse(w * 3 / 4, h / 2, w, h).unwrap();
    assert!(east[1] > 0.99, "{east:?}");
    let north = inverse(w / 2, 2, w, h).unwrap();
    assert!(north[2] > 0.99, "{north:?}");
    assert!(inverse(0, 0, w, h).is_none());
    assert!(inverse(w - 1, h - 1, w, h).is_none());
}

#[test]
fn every_pixel_of_a_map_is_drawn_and_colours_follow_values() {
    let grid = HealpixGrid::nested(4).unwrap();
    let n = grid.npix() as usize;
    // Pixel p gets grey level p/N in all channels: every level must appear in a large picture.
    let rgb: Vec<f32> = (0..n).flat_map(|p| [p as f32 / n as f32; 3]).collect();
    let img = rgb_map(grid, &rgb, 800).unwrap();
    let mut seen = vec![false; n];
    for px in img.pixels() {
        if px.0 != [255, 255, 255] {
            let level = px.0[0] as f32 / 255.0 * n as f32;
            seen[(level.round() as usize).min(n - 1)] = true;
        }
    }
    assert!(seen.iter().filter(|s| **s).count() > n * 9 / 10);
    assert!(rgb_map(grid, &rgb[..10], 100).is_err());

    let values: Vec<f32> = (0..n).map(|p| p as f32).collect();
    let fig = map_figure(grid, &values, 300, "TEST", None, "INDEX").unwrap();
    assert_eq!(fig.width(), 300);
    assert!(fig.height() > 150);
    assert!(map_figure(grid, &values, 10, "TEST", None, "INDEX").is_err());
}

#[test]
fn colour_bar_ticks_are_round_and_labelled() {
    let labels: Vec<String> = nice_ticks(0.0, 1.0, 5)
        .into_iter()
        .map(tick_label)
        .collect();
    assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    let labels: Vec<String> = nice_ticks(-3.0, 17.0, 4)
        .into_iter()
        .map(tick_label)
        .collect();
    assert_eq!(labels, ["0", "5", "10", "15"]);
    assert_eq!(tick_label(0.2), "0.2");
    assert_eq!(tick_label(0.0015), "1.5E-3");
    assert_eq!(tick_label(250.0), "250");
    assert_eq!(viridis(0.0).0, [68, 1, 84]);
    assert_eq!(viridis(1.0).0, [253, 231, 37]);
}
