//! The polar-BEV moving-object segmentation network of MotionBEV and KDMOS, as `tch` modules whose
//! parameter names are the reference `state_dict` keys.
//!
//! Points → PointNet (`pt_model_in`, 9 → 32 → 64 → 128 → 256) → max-pool per BEV cell →
//! `fea_compression` (256 → 32) → appearance image `[B, 32, 480, 360]`; the 8 motion columns are
//! max-pooled per cell into a motion image `[B, 8, 480, 360]`. A two-branch U-Net with ring
//! convolutions and four co-attention gates (`BEV_model.network`) outputs `[B, classes × 32, 480, 360]`,
//! read as voxel logits `[B, classes, 480, 360, 32]`; each point takes its voxel's logits.
//!
//! Variants: KDMOS (DySample up-samplers, 4 classes) and MotionBEV (transposed-convolution
//! up-samplers, 2 classes). A `width` other than 32 scales every channel count (used for the
//! teacher); checkpoints of the reference have width 32.

pub mod checkpoint;
pub mod layers;

use crate::features::polar::{PolarGrid, APPEARANCE_COLUMNS};
use layers::{BatchNorm, CoAttentionGate, Conv2d, Down, InConv, Linear, Up};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{self, Path as VarPath};
use tch::{Device, Kind, Tensor};

pub use checkpoint::CheckpointError;

/// Which up-sampler the decoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// DySample up-samplers (KDMOS).
    Kdmos,
    /// ConvTranspose2d up-samplers (MotionBEV).
    MotionBev,
}

/// Shape of a network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub variant: Variant,
    /// Output classes (4 for KDMOS: unlabelled, static, movable, moving; 2 for MotionBEV).
    pub classes: i64,
    /// Base channel width of the appearance branch (32 in the reference).
    pub width: i64,
    /// Motion feature columns.
    pub motion_channels: i64,
    /// Dropout / DropBlock probability in training.
    pub dropout: f64,
}

impl NetConfig {
    pub const KDMOS: NetConfig = NetConfig { variant: Variant::Kdmos, classes: 4, width: 32, motion_channels: 8, dropout: 0.5 };
    pub const MOTIONBEV: NetConfig = NetConfig { variant: Variant::MotionBev, classes: 2, width: 32, motion_channels: 8, dropout: 0.5 };
}

/// A batch of scans as the network takes it. Points of all scans are concatenated.
pub struct BevInput<'a> {
    /// `[N, 9 + motion_channels]` float: appearance features then motion columns.
    pub features: &'a Tensor,
    /// `[N, 3]` int64 grid indices (ρ, φ, z).
    pub grid: &'a Tensor,
    /// `[N]` int64 scan index within the batch.
    pub batch: &'a Tensor,
    pub batch_size: i64,
}

/// PointNet `PPmodel_in`.
struct PointNet {
    bn1: BatchNorm,
    layers: Vec<(Linear, BatchNorm)>,
    out: Linear,
    /// Inference: the batch norms folded into the linear layers (the last one is `out`).
    folded: Option<Vec<Linear>>,
}

impl PointNet {
    fn new(p: &VarPath, in_dim: i64, init: i64) -> Self {
        let dims = [in_dim, init, init * 2, init * 4];
        let layers = (0..3)
            .map(|i| {
                let q = p / format!("layer{}", i + 1);
                (Linear::new(&(&q / "0"), dims[i], dims[i + 1]), BatchNorm::new(&(&q / "1"), dims[i + 1]))
            })
            .collect();
        PointNet { bn1: BatchNorm::new(&(p / "bn1"), in_dim), layers, out: Linear::new(&(p / "out"), init * 4, init * 8), folded: None }
    }

    /// Folds every batch norm into a linear layer: `bn1` into the first layer's inputs, each
    /// layer's own into its outputs. Exact (no padding here).
    fn fold_batch_norm(&mut self, kind: Kind) {
        let mut folded: Vec<Linear> = Vec::with_capacity(self.layers.len() + 1);
        for (i, (linear, bn)) in self.layers.iter().enumerate() {
            folded.push(if i == 0 { linear.after(&self.bn1, Kind::Float).folded_with(bn, kind) } else { linear.folded_with(bn, kind) });
        }
        folded.push(Linear { weight: self.out.weight.detach().to_kind(kind), bias: self.out.bias.detach().to_kind(kind) });
        self.folded = Some(folded);
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if let (Some(folded), false) = (&self.folded, train) {
            let (last, hidden) = folded.split_last().expect("a folded PointNet has layers");
            let h = hidden.iter().fold(x.shallow_clone(), |h, linear| linear.forward(&h).relu());
            return last.forward(&h);
        }
        let mut h = self.bn1.forward(x, train);
        for (linear, bn) in &self.layers {
            h = bn.forward(&linear.forward(&h), train).relu();
        }
        self.out.forward(&h)
    }
}

/// `BEV_model.network`: the two-branch U-Net.
struct Unet {
    inc: InConv,
    down: [Down; 4],
    res_inc: InConv,
    res_down: [Down; 3],
    gates: [CoAttentionGate; 4],
    up: [Up; 4],
    outc: Conv2d,
    dropout: f64,
}

impl Unet {
    fn new(p: &VarPath, config: &NetConfig, in_ch: i64, heights: i64) -> Self {
        let w = config.width;
        let dys = config.variant == Variant::Kdmos;
        let drop = config.dropout;
        Unet {
            inc: InConv::new(&(p / "inc"), in_ch, w),
            down: [
                Down::new(&(p / "down1"), w, 2 * w),
                Down::new(&(p / "down2"), 2 * w, 4 * w),
                Down::new(&(p / "down3"), 4 * w, 8 * w),
                Down::new(&(p / "down4"), 8 * w, 8 * w),
            ],
            res_inc: InConv::new(&(p / "res_inc"), config.motion_channels, w / 2),
            res_down: [Down::new(&(p / "res_down1"), w / 2, w), Down::new(&(p / "res_down2"), w, 2 * w), Down::new(&(p / "res_down3"), 2 * w, 4 * w)],
            gates: [
                CoAttentionGate::new(&(p / "CGM0"), w, w / 2),
                CoAttentionGate::new(&(p / "CGM1"), 2 * w, w),
                CoAttentionGate::new(&(p / "CGM2"), 4 * w, 2 * w),
                CoAttentionGate::new(&(p / "CGM3"), 8 * w, 4 * w),
            ],
            up: [
                Up::new(&(p / "up3"), 16 * w, 4 * w, dys, drop),
                Up::new(&(p / "up2"), 8 * w, 2 * w, dys, drop),
                Up::new(&(p / "up1"), 4 * w, w, dys, drop),
                Up::new(&(p / "up0"), 2 * w, w, dys, drop),
            ],
            outc: Conv2d::new(&(p / "outc" / "conv"), w, config.classes * heights, 1, [0, 0], true),
            dropout: drop,
        }
    }

    fn fold_batch_norm(&mut self, kind: Kind) {
        self.inc.fold_batch_norm(kind);
        self.res_inc.fold_batch_norm(kind);
        self.down.iter_mut().chain(self.res_down.iter_mut()).for_each(|d| d.fold_batch_norm(kind));
        self.gates.iter_mut().for_each(|g| g.fold_batch_norm(kind));
        self.up.iter_mut().for_each(|u| u.fold_batch_norm(kind));
    }

    /// Channels-last memory order in training (see [`layers::channels_last`]) and in inference on
    /// a GPU, where cuDNN's tensor-core kernels read and write NHWC without transposing.
    fn forward(&self, appearance: &Tensor, motion: &Tensor, train: bool) -> Tensor {
        let nhwc = train || appearance.device().is_cuda();
        let (appearance, motion) = if nhwc {
            (layers::channels_last(appearance), layers::channels_last(motion))
        } else {
            (appearance.shallow_clone(), motion.shallow_clone())
        };
        let (appearance, motion) = (&appearance, &motion);
        let m0 = self.res_inc.forward(motion, train);
        let m1 = self.res_down[0].forward(&m0, train);
        let m2 = self.res_down[1].forward(&m1, train);
        let m3 = self.res_down[2].forward(&m2, train);
        let c0 = self.gates[0].forward(&self.inc.forward(appearance, train), &m0, train);
        let c1 = self.gates[1].forward(&self.down[0].forward(&c0, train), &m1, train);
        let c2 = self.gates[2].forward(&self.down[1].forward(&c1, train), &m2, train);
        let c3 = self.gates[3].forward(&self.down[2].forward(&c2, train), &m3, train);
        let c4 = self.down[3].forward(&c3, train);
        let x = self.up[0].forward(&c4, &c3, train, nhwc);
        let x = self.up[1].forward(&x, &c2, train, nhwc);
        let x = self.up[2].forward(&x, &c1, train, nhwc);
        let x = self.up[3].forward(&x, &c0, train, nhwc);
        // NCHW in, NCHW out: the voxel and point logits index the output in that order
        self.outc.forward(&x.dropout(self.dropout, train).contiguous())
    }
}

/// The whole network (`ptBEVnet`) with its parameters.
pub struct PolarBevNet {
    pub vs: nn::VarStore,
    pub config: NetConfig,
    pub grid: PolarGrid,
    point_net: PointNet,
    fea_compression: Linear,
    unet: Unet,
}

impl PolarBevNet {
    /// A freshly initialised network (PyTorch's default initialisation).
    pub fn new(config: NetConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let grid = PolarGrid::default();
        let root = vs.root();
        let point_width = 32;
        let compressed = 32;
        let point_net = PointNet::new(&(&root / "pt_model_in"), APPEARANCE_COLUMNS, point_width);
        let fea_compression = Linear::new(&(&root / "fea_compression" / "0"), point_width * 8, compressed);
        let unet = Unet::new(&(&root / "BEV_model" / "network"), &config, compressed, grid.size[2]);
        PolarBevNet { vs, config, grid, point_net, fea_compression, unet }
    }

    /// A network built from a checkpoint (`.pt` from `torch.save(state_dict)`, or `.safetensors`):
    /// variant, class count and width are read from the tensors, which must then match exactly.
    pub fn from_checkpoint(path: &Path, device: Device) -> Result<Self, CheckpointError> {
        let tensors = checkpoint::read(path)?;
        let config = checkpoint::infer_config(path, &tensors)?;
        let mut net = PolarBevNet::new(config, device);
        checkpoint::load_strict(&mut net.vs, path, tensors)?;
        // a network trained on another grid says so in its model card
        if let Some(grid) = ModelCard::read(path).and_then(|c| c.grid) {
            net.grid.size = grid;
        }
        Ok(net)
    }

    /// Writes the parameters as safetensors, atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_atomic(&self.vs, path)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Prepares the network for inference in `kind`: every batch norm that follows a layer (and
    /// PointNet's input one) is folded into that layer's weights, computed in float32 from the
    /// current parameters. Inference then runs about 30 fewer kernels; training (`train = true`)
    /// still uses the separate layers, whose parameters are unchanged. Call again after the
    /// parameters change.
    pub fn fold_batch_norm(&mut self, kind: Kind) {
        let _guard = tch::no_grad_guard();
        self.point_net.fold_batch_norm(kind);
        self.unet.fold_batch_norm(kind);
    }

    pub fn parameter_count(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// BEV logits `[B, classes × 32, 480, 360]` (class fastest within each height).
    pub fn forward(&self, input: &BevInput, train: bool) -> Tensor {
        let (appearance, motion) = self.bev_images(input, train);
        self.unet.forward(&appearance, &motion, train)
    }

    /// The two-branch U-Net alone, on BEV images from [`PolarBevNet::bev_images`] (inference). Its
    /// shapes never change, which is what lets the MOS engine capture it in a CUDA graph.
    pub fn unet_forward(&self, appearance: &Tensor, motion: &Tensor) -> Tensor {
        self.unet.forward(appearance, motion, false)
    }

    /// Points → the appearance and motion BEV images `[B, C, 480, 360]` (PointNet, scatter-max,
    /// feature compression). The images are channels-last in memory when training (what the U-Net then
    /// runs in), NCHW otherwise.
    ///
    /// Pooling goes straight into the full grid rather than over the unique occupied cells as the
    /// reference does: the values are the same (empty cells are zero), and without `unique` the host
    /// never waits for the device here.
    pub fn bev_images(&self, input: &BevInput, train: bool) -> (Tensor, Tensor) {
        self.bev_images_of(input, None, train)
    }

    /// [`PolarBevNet::bev_images`] of a batch padded to a fixed number of points (what lets the MOS
    /// engine capture a whole scan in a CUDA graph): points where `valid` is false go to a spare
    /// cell past the grid and leave no trace in the images.
    pub fn bev_images_of(&self, input: &BevInput, valid: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        let (h, w) = (self.grid.size[0], self.grid.size[1]);
        let device = input.features.device();
        let kind = input.features.kind();
        let cells_total = input.batch_size * h * w;
        let cell = input.batch * (h * w) + input.grid.select(1, 0) * w + input.grid.select(1, 1);
        let (cell, rows) = match valid {
            // padding spread over many spare cells: thousands of points max-reduced into one cell
            // would serialise on its atomics (1.3 ms at 29k padded points on an H100)
            Some(valid) => {
                let spare = Tensor::arange(cell.size()[0], (Kind::Int64, device)).remainder(SPARE_CELLS) + cells_total;
                (cell.where_self(valid, &spare), cells_total + SPARE_CELLS)
            }
            None => (cell, cells_total),
        };
        let occupied = Tensor::zeros([rows, 1], (kind, device)).index_fill(0, &cell, 1.0);
        let appearance = input.features.narrow(1, 0, APPEARANCE_COLUMNS);
        let motion = input.features.narrow(1, APPEARANCE_COLUMNS, self.config.motion_channels);
        // contiguous: batch norm over a strided [N, 9] view takes its slow one-block-per-channel
        // kernels (27 ms of a training step's backward at 950k points)
        let point_features = self.point_net.forward(&appearance.contiguous(), train);
        // an empty cell's compressed feature would be relu(bias): masked back to zero
        let compressed = self.fea_compression.forward(&scatter_max(&point_features, &cell, rows)).relu() * &occupied;
        let image = |cells: Tensor| {
            let cells = if rows == cells_total { cells } else { cells.narrow(0, 0, cells_total) };
            let c = cells.size()[1];
            let nhwc = cells.view([input.batch_size, h, w, c]).permute([0, 3, 1, 2]);
            // the U-Net runs channels-last on GPUs and in training (see `Unet::forward`)
            if train || device.is_cuda() {
                nhwc
            } else {
                nhwc.contiguous()
            }
        };
        (image(compressed), image(scatter_max(&motion, &cell, rows)))
    }

    /// Per-point logits `[N, classes]` gathered from BEV logits at each point's voxel.
    pub fn point_logits(&self, bev: &Tensor, input: &BevInput) -> Tensor {
        let (h, w, z) = (self.grid.size[0], self.grid.size[1], self.grid.size[2]);
        let classes = self.config.classes;
        let base = ((input.batch * (classes * z) + input.grid.select(1, 2) * classes) * h + input.grid.select(1, 0)) * w + input.grid.select(1, 1);
        let offsets = Tensor::arange(classes, (Kind::Int64, base.device())) * (h * w);
        let index = base.unsqueeze(1) + offsets.unsqueeze(0);
        bev.reshape([-1]).index_select(0, &index.view([-1])).view([-1, classes])
    }

    /// Voxel logits `[B, classes, 480, 360, 32]` (the reference model's output).
    pub fn voxel_logits(&self, bev: &Tensor) -> Tensor {
        let (b, h, w) = (bev.size()[0], self.grid.size[0], self.grid.size[1]);
        bev.view([b, self.grid.size[2], self.config.classes, h, w]).permute([0, 2, 3, 4, 1])
    }
}

/// What `<weights>.yaml` next to a checkpoint says about it (written by `kdseg train`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelCard {
    /// Motion features the network was trained with: causal, reference or both.
    pub motion: Option<String>,
    /// Grid size when it is not the reference's 480 × 360 × 32.
    pub grid: Option<[i64; 3]>,
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_yaml::Value>,
}

impl ModelCard {
    /// The card of `weights` (`best.safetensors` → `best.yaml`), if there is one.
    pub fn read(weights: &Path) -> Option<ModelCard> {
        let text = std::fs::read_to_string(weights.with_extension("yaml")).ok()?;
        serde_yaml::from_str(&text).ok()
    }
}

/// Cells past the grid that masked-out (padding) points are pooled into, then dropped.
const SPARE_CELLS: i64 = 4096;

/// Per-cell maximum of `values [N, C]` over the points of each cell (`cell_of [N]` in 0..cells);
/// zero in cells without points.
fn scatter_max(values: &Tensor, cell_of: &Tensor, cells: i64) -> Tensor {
    let c = values.size()[1];
    let index = cell_of.unsqueeze(1).expand([-1, c], false);
    // include_self = false: a cell's maximum is over its points only, not over the zero it starts
    // at. The zeros are one expanded element: autograd keeps `self` for the backward pass, and a full
    // [cells, C] tensor there would hold 0.7 GB in a training step.
    Tensor::zeros([1, 1], (values.kind(), values.device())).expand([cells, c], false).internal_scatter_reduce(0, &index, values, "amax", false)
}
