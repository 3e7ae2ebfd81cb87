//! An equivariant ConvContract (ginjax's layer) on a 2-D torus: rotating the
//! input field by 90° rotates the output field by 90°.
//!
//! ```sh
//! cargo run --release -p idx-flow --example conv_contract
//! ```

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow::equivariant::{ConvContractConfig, MultiImage, TensorKey, hyperoctahedral_group};

fn main() -> Result<(), idx_flow::Error> {
    let device = Device::default();
    // Scalars and vectors in, vectors out, on a 16×16 torus.
    let conv = ConvContractConfig::new(
        2,
        vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 1)],
        vec![(TensorKey::VECTOR, 4)],
    )
    .init(&device)?;
    let x = MultiImage::<4>::new(vec![true, true])?
        .with(
            TensorKey::SCALAR,
            Tensor::random([3, 2, 16, 16], Distribution::Default, &device),
        )?
        .with(
            TensorKey::VECTOR,
            Tensor::random([3, 2, 16, 16], Distribution::Default, &device),
        )?;
    let y = conv.try_forward(x.clone())?;
    println!(
        "output vectors {:?}",
        y.get(TensorKey::VECTOR).map(|t| t.dims())
    );

    // Equivariance under every element of the group of the square.
    for g in hyperoctahedral_group(2)? {
        let rotated_then_conv = conv.try_forward(g.apply(&x)?)?;
        let conv_then_rotated = g.apply(&y)?;
        let (a, b) = (
            rotated_then_conv
                .get(TensorKey::VECTOR)
                .expect("vector output")
                .clone()
                .into_data(),
            conv_then_rotated
                .get(TensorKey::VECTOR)
                .expect("vector output")
                .clone()
                .into_data(),
        );
        let worst = a
            .iter::<f32>()
            .zip(b.iter::<f32>())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("{:?}: largest difference {worst:e}", g.matrix());
    }
    Ok(())
}
