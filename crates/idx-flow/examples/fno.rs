//! A Fourier neural operator from the pde family (pdequinox's ClassicFNO),
//! trained for a few steps to advect a 1-D periodic signal by one cell.
//!
//! ```sh
//! cargo run --release -p idx-flow --example fno
//! ```

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use idx_flow::pde::ClassicFnoConfig;

fn main() -> Result<(), idx_flow::Error> {
    let device = Device::default().autodiff();
    let (batch, n) = (8, 64);
    let mut fno = ClassicFnoConfig::new(1, 1, 1)
        .with_hidden_channels(16)
        .with_num_modes(vec![8])
        .init(&device)?;
    println!(
        "ClassicFNO 1 -> 1 on {n} cells, receptive field {:?}",
        fno.receptive_field()
    );

    let mut optim = AdamConfig::new().init();
    for step in 0..=50 {
        let u = Tensor::<3>::random([batch, 1, n], Distribution::Normal(0.0, 1.0), &device);
        // The target: every value moved one cell to the right (periodic).
        let target = Tensor::cat(
            vec![
                u.clone().slice([0..batch, 0..1, n - 1..n]),
                u.clone().slice([0..batch, 0..1, 0..n - 1]),
            ],
            2,
        );
        let loss = fno.try_forward(u)?.sub(target).powi_scalar(2).mean();
        if step % 10 == 0 {
            println!(
                "step {step:3}: mse {:.4}",
                loss.clone()
                    .into_data()
                    .iter::<f32>()
                    .next()
                    .unwrap_or(f32::NAN)
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &fno);
        fno = optim.step(1e-2, fno, grads);
    }
    Ok(())
}
