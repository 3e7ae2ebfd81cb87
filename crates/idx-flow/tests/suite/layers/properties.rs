//! Properties of the layers that the fixtures do not show: shapes for odd sizes,
//! errors on wrong inputs, gradients reaching every parameter, dropout
//! statistics, state dict round trips.
