//! The architecture cases of `pdequinox_archs_manifest.json` and
//! `pdequinox_archs.safetensors`: parameter counts, receptive fields, and the
//! tiny networks' outputs and gradients.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use idx_flow_core::state_dict::{StateDict, StateVisitor, TorchState, load_state_dict};
use idx_flow_pde::*;
use serde_json::Value;

use crate::layers::{Net, check_case, flag, int, mode};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_testing::fixtures;

fn manifest() -> Value {
    fixtures::manifest("pdequinox_archs_manifest.json")
}

fn opt(args: &Value, name: &str) -> Option<usize> {
    args[name].as_u64().map(|v| v as usize)
}

fn list(args: &Value, name: &str) -> Option<Vec<usize>> {
    match &args[name] {
        Value::Null => None,
        Value::Number(n) => Some(vec![n.as_u64().unwrap() as usize]),
        Value::Array(a) => Some(a.iter().map(|v| v.as_u64().unwrap() as usize).collect()),
        v => panic!("argument {name}: unexpected {v}"),
    }
}

fn boundary(args: &Value) -> BoundaryMode {
    if args["boundary_mode"].is_null() {
        BoundaryMode::Periodic
    } else {
        mode(args)
    }
}

/// The networks pdequinox's architectures build.
enum Arch {
    Conv(ConvNet),
    Seq(Sequential),
    Hier(Hierarchical),
}

impl Arch {
    /// pdequinox.arch.{class}(**args), with pdequinox's defaults for what
    /// `args` leaves out.
    fn build(class: &str, a: &Value, device: &Device) -> idx_flow_healpix::Result<Arch> {
        let (d, ci, co) = (
            int(a, "num_spatial_dims"),
            int(a, "in_channels"),
            int(a, "out_channels"),
        );
        let m = boundary(a);
        macro_rules! set {
            ($c:expr, $($field:ident),*) => {{
                let mut c = $c;
                $(if let Some(v) = opt(a, stringify!($field)) { c.$field = v; })*
                c
            }};
        }
        Ok(match class {
            "ConvNet" => {
                let mut c = set!(
                    ConvNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    depth,
                    kernel_size
                );
                c.use_bias = flag(a, "use_bias", true);
                c.use_final_bias = flag(a, "use_final_bias", true);
                Arch::Conv(c.init(device)?)
            }
            "ClassicResNet" => {
                let c = set!(
                    ClassicResNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    num_blocks
                );
                Arch::Seq(c.with_use_norm(flag(a, "use_norm", false)).init(device)?)
            }
            "ModernResNet" => {
                let c = set!(
                    ModernResNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    num_blocks
                );
                Arch::Seq(c.with_use_norm(flag(a, "use_norm", true)).init(device)?)
            }
            "DilatedResNet" => {
                let mut c = set!(
                    DilatedResNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    num_blocks
                );
                if let Some(r) = list(a, "dilation_rates") {
                    c.dilation_rates = r;
                }
                Arch::Seq(c.with_use_norm(flag(a, "use_norm", true)).init(device)?)
            }
            "ClassicUNet" => {
                let c = set!(
                    ClassicUNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    num_levels
                );
                Arch::Hier(c.with_use_norm(flag(a, "use_norm", true)).init(device)?)
            }
            "ModernUNet" => {
                let c = set!(
                    ModernUNetConfig::new(d, ci, co).with_boundary_mode(m),
                    hidden_channels,
                    num_levels,
                    num_blocks
                );
                Arch::Hier(
                    c.with_use_norm(flag(a, "use_norm", true))
                        .with_channel_multipliers(list(a, "channel_multipliers"))
                        .init(device)?,
                )
            }
            "ClassicFNO" => {
                let mut c = set!(
                    ClassicFnoConfig::new(d, ci, co),
                    hidden_channels,
                    num_blocks
                );
                if let Some(modes) = list(a, "num_modes") {
                    c.num_modes = modes;
                }
                Arch::Seq(c.init(device)?)
            }
            c => panic!("class {c} has no Rust counterpart"),
        })
    }

    fn num_params(&self) -> usize {
        match self {
            Arch::Conv(m) => m.num_params(),
            Arch::Seq(m) => m.num_params(),
            Arch::Hier(m) => m.num_params(),
        }
    }

    fn receptive_field(&self) -> Vec<(f64, f64)> {
        match self {
            Arch::Conv(m) => m.receptive_field(),
            Arch::Seq(m) => m.receptive_field(),
            Arch::Hier(m) => m.receptive_field(),
        }
    }

    fn load(self, sd: &StateDict) -> idx_flow_healpix::Result<Arch> {
        Ok(match self {
            Arch::Conv(m) => Arch::Conv(load_state_dict(m, sd)?),
            Arch::Seq(m) => Arch::Seq(load_state_dict(m, sd)?),
            Arch::Hier(m) => Arch::Hier(load_state_dict(m, sd)?),
        })
    }
}

impl Net for Arch {
    fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        match self {
            Arch::Conv(m) => m.forward(x),
            Arch::Seq(m) => m.forward(x),
            Arch::Hier(m) => m.forward(x),
        }
    }

    fn visit<V: StateVisitor>(&self, v: &mut V) {
        match self {
            Arch::Conv(m) => m.visit_state("", v),
            Arch::Seq(m) => m.visit_state("", v),
            Arch::Hier(m) => m.visit_state("", v),
        }
    }
}

/// The manifest's receptive field (`"inf"` for an infinite one).
fn field(v: &Value) -> Vec<(f64, f64)> {
    let side = |s: &Value| match s {
        Value::String(t) if t == "inf" => f64::INFINITY,
        s => s.as_f64().expect("a number or \"inf\""),
    };
    v.as_array()
        .expect("receptive_field is a list")
        .iter()
        .map(|axis| (side(&axis[0]), side(&axis[1])))
        .collect()
}

/// Every architecture of the manifest (its `counts` and `cases` sections):
/// `(section, name, entry)`, at least one.
pub fn architectures() -> Vec<(String, String, Value)> {
    let m = manifest();
    let all: Vec<(String, String, Value)> = ["counts", "cases"]
        .iter()
        .flat_map(|section| {
            m[*section]
                .as_object()
                .unwrap_or_else(|| panic!("the manifest has no '{section}'"))
                .iter()
                .map(|(name, entry)| (section.to_string(), name.clone(), entry.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!all.is_empty(), "no architecture in the manifest");
    all
}

/// The parameter count and receptive field of one architecture, as pdequinox reports them.
pub fn check_count_and_field(name: &str, case: &Value) {
    let class = case["class"].as_str().expect("class");
    let net = Arch::build(class, &case["args"], &Device::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = case["param_count"].as_u64().expect("param_count") as usize;
    assert_eq!(net.num_params(), want, "{name}: parameter count");
    assert_eq!(
        net.receptive_field(),
        field(&case["receptive_field"]),
        "{name}: receptive field"
    );
}

/// The tiny network of one case of `pdequinox_archs.safetensors`: built,
/// loaded with pdequinox's parameters, output and gradients checked.
pub fn check_architecture_case(file: &SafetensorsFile, name: &str, case: &Value) {
    let device = Device::default().autodiff();
    let class = case["class"].as_str().expect("class");
    let sd = StateDict::from_safetensors(file, &format!("{name}.param.")).unwrap();
    let net = Arch::build(class, &case["args"], &device)
        .and_then(|n| n.load(&sd))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    match file.shape(&format!("{name}.input")).unwrap().len() + 1 {
        3 => check_case::<3, _>(file, name, &net, &device),
        4 => check_case::<4, _>(file, name, &net, &device),
        5 => check_case::<5, _>(file, name, &net, &device),
        r => panic!("{name}: rank {r} input"),
    }
}

/// `pdequinox_archs.safetensors`, from the fixture folder or the workspace's.
pub fn architectures_file() -> SafetensorsFile {
    let path = fixtures::find("pdequinox_archs.safetensors");
    SafetensorsFile::open(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
